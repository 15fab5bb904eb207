"""Spawn and join N trivial goroutines."""

from __future__ import annotations

import asyncio
import threading
import time

import gorun

from ._harness import Case, Target


async def _nothing() -> None:
    pass


def asyncio_create_task_gather(n: int) -> float:
    """``create_task`` n times, then ``gather``."""

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*[asyncio.create_task(_nothing()) for _ in range(n)])
        return time.perf_counter() - start

    return asyncio.run(main())


def gorun_go_await(n: int, procs: int) -> float:
    """``go()`` n times, then await each handle, on *procs* workers."""

    async def main() -> float:
        start = time.perf_counter()
        for g in [gorun.go(_nothing()) for _ in range(n)]:
            await g
        return time.perf_counter() - start

    return gorun.run(main(), procs=procs)


def trio_nursery(n: int) -> float:
    """``nursery.start_soon`` n times; the nursery joins them."""
    import trio

    async def main() -> float:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(_trio_nothing)
        return time.perf_counter() - start

    return trio.run(main)


async def _trio_nothing() -> None:
    pass


def threads(n: int) -> float:
    """Start and join plain threads (a tenth as many, reported per thread)."""
    n = max(1, n // 10)  # threads are costly: a tenth as many, reported per thread
    start = time.perf_counter()
    ts = [threading.Thread(target=lambda: None) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return (time.perf_counter() - start) * 10


def cases() -> list[Case]:
    """The spawn case."""
    return [
        Case(
            name="spawn",
            description="start and join N trivial goroutines / tasks",
            unit="goroutine",
            baseline="asyncio create_task + gather",
            peers={
                "asyncio create_task + gather": asyncio_create_task_gather,
                "gorun go + await, procs=1": lambda n: gorun_go_await(n, 1),
                "gorun go + await, procs=2": lambda n: gorun_go_await(n, 2),
                "trio nursery.start_soon": trio_nursery,
                "threading.Thread start + join": threads,
            },
            ops=20_000,
            quick_ops=4_000,
            targets=[
                Target("gorun go + await, procs=1", "asyncio create_task + gather", 1.2),
                Target("gorun go + await, procs=2", "asyncio create_task + gather", 1.2),
            ],
        ),
    ]
