"""Conformance suite: one set of asyncio cases, run on stock asyncio and on gorun.

Every case runs on three backends (see ``conftest.py``): ``asyncio.run``, gorun with one
worker, and gorun with four workers where the case runs in a goroutine on a worker
thread. The expected outcome of a case is the same on every backend.
"""
