"""CPU-bound fan-out: N independent work items, run as goroutines on 1..P workers.

Two kinds of work item:

* pure Python (an arithmetic loop), which holds the GIL for its whole run;
* SHA-256 of a 1 MiB buffer, which ``hashlib`` computes with the GIL released.

One operation is one work item, so the time per item is the inverse of the throughput.
gorun runs the items with ``procs`` = 1, 2, ... P workers (P is the CPU count, or
``--procs``); the baseline is one plain asyncio loop running them as tasks, and a
``ThreadPoolExecutor`` of P threads shows what plain threads get out of the same
machine. Where uvloop is installed, gorun on uvloop workers (``loop="uvloop"``) runs
them too, with 1 and P workers: a uvloop worker has no run permit, and no goal here of
its own. The goal depends on the interpreter running the suite: with the GIL, P workers
should keep at least the throughput of one, and of one plain asyncio loop (they cannot
run Python in parallel, and adding workers must never cost throughput); on a
free-threaded build they should reach 0.8 x P times it. As a cost ratio per item: at
most 1 (GIL) or 1/(0.8 P) (free-threaded) times the procs=1 figure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import time
from collections.abc import Callable

import gorun

from ._harness import Case, Goal, Target, gil_enabled, has_uvloop

SPIN = 5_000  # iterations of the arithmetic loop in one pure-Python work item
BUFFER = bytes(range(256)) * 4096  # 1 MiB for the hashing work item

Work = Callable[[], object]


def spin() -> object:
    """A pure-Python work item: an arithmetic loop that never releases the GIL on its own."""
    x = 0
    for i in range(SPIN):
        x = (x + i * i) % 1_000_003
    return x


def sha256() -> object:
    """A work item that releases the GIL: SHA-256 of 1 MiB."""
    return hashlib.sha256(BUFFER).digest()


async def _item(work: Work) -> object:
    return work()


def _check(work: Work, results: list[object]) -> None:
    expected = work()
    if any(r != expected for r in results):
        raise AssertionError("a work item returned a wrong result")


def asyncio_tasks(n: int, work: Work) -> float:
    """n tasks on one asyncio loop."""

    async def main() -> float:
        start = time.perf_counter()
        results = await asyncio.gather(*[asyncio.create_task(_item(work)) for _ in range(n)])
        elapsed = time.perf_counter() - start
        _check(work, results)
        return elapsed

    return asyncio.run(main())


def asyncio_to_thread(n: int, work: Work) -> float:
    """n calls through ``asyncio.to_thread`` (the default executor) from one loop."""

    async def main() -> float:
        start = time.perf_counter()
        results = await asyncio.gather(*[asyncio.to_thread(work) for _ in range(n)])
        elapsed = time.perf_counter() - start
        _check(work, results)
        return elapsed

    return asyncio.run(main())


def thread_pool(n: int, work: Work, procs: int) -> float:
    """n calls on a ``ThreadPoolExecutor`` of *procs* threads, no event loop: what plain
    threads get out of the machine and the GIL."""
    with concurrent.futures.ThreadPoolExecutor(procs) as pool:
        start = time.perf_counter()
        results = [f.result() for f in [pool.submit(work) for _ in range(n)]]
        elapsed = time.perf_counter() - start
    _check(work, results)
    return elapsed


def gorun_goroutines(n: int, work: Work, procs: int, loop: str = "asyncio") -> float:
    """n goroutines started with go() from main, on *procs* workers of kind *loop*."""

    async def main() -> float:
        start = time.perf_counter()
        handles = [gorun.go(_item(work)) for _ in range(n)]
        results = [await h for h in handles]
        elapsed = time.perf_counter() - start
        _check(work, results)
        return elapsed

    return gorun.run(main(), procs=procs, loop=loop)


def speedup_goal(procs: int) -> tuple[float, str]:
    """The bound on procs=P cost per item relative to procs=1, and its meaning in words."""
    if gil_enabled():
        return 1.0, "GIL build: adding workers never costs throughput"
    return 1 / (0.8 * procs), f"free-threaded build: speedup >= 0.8 x {procs}"


def _case(name: str, description: str, unit: str, work: Work, procs: int,
          ops: int, quick_ops: int, *, executor: bool) -> Case:
    base = "asyncio, one loop"
    peers: dict[str, Callable[[int], float]] = {base: lambda n: asyncio_tasks(n, work)}
    if executor:
        peers["asyncio.to_thread"] = lambda n: asyncio_to_thread(n, work)
    for p in range(1, procs + 1):
        peers[f"gorun procs={p}"] = functools.partial(gorun_goroutines, work=work, procs=p)
    if has_uvloop():  # the other loop kind, at both ends of the range (no goal of its own)
        for p in sorted({1, procs}):
            peers[f"gorun procs={p}, uvloop workers"] = functools.partial(
                gorun_goroutines, work=work, procs=p, loop="uvloop")
    peers[f"ThreadPoolExecutor({procs}), no loop"] = functools.partial(thread_pool, work=work,
                                                                      procs=procs)
    bound, note = speedup_goal(procs)
    targets: list[Goal] = [Target(f"gorun procs={procs}", "gorun procs=1", bound, note=note)]
    if gil_enabled():
        targets.append(Target(f"gorun procs={procs}", base, 1.0,
                              note="GIL build: no slower than one asyncio loop"))
    return Case(name=name, description=description, unit=unit, baseline=base, peers=peers,
                ops=ops, quick_ops=quick_ops, targets=targets, rate="items/s",
                reference="gorun procs=1")


def cases(procs: int) -> list[Case]:
    """The two fan-out cases, gorun with 1..*procs* workers."""
    return [
        _case("cpu-fanout-python", f"pure-Python work items ({SPIN}-step loop) as goroutines",
              "item", spin, procs, ops=300, quick_ops=60, executor=False),
        _case("cpu-fanout-sha256", "SHA-256 of 1 MiB per item (releases the GIL)",
              "item", sha256, procs, ops=300, quick_ops=60, executor=True),
    ]
