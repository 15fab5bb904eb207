"""Pipeline: one producer, K workers, one collector, joined by bounded channels.

The producer sends the numbers 0..n-1 on *jobs*; each of K workers takes numbers from
*jobs* and sends ``x + 1`` on *results* (fan-out, fan-in); the collector adds the results
up. One operation is one item through the whole pipeline. Every peer checks the sum, so
a lost or doubled item fails the run.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable

import gorun

from ._harness import Case, Goal, Target

WORKERS = 4
BUFFER = 16


def _expected(n: int) -> int:
    return n * (n + 1) // 2  # sum of x + 1 for x in 0..n-1


def _check(n: int, total: int) -> None:
    if total != _expected(n):
        raise AssertionError(f"pipeline lost items: sum {total}, expected {_expected(n)}")


def asyncio_queues(n: int) -> float:
    """asyncio.Queue stages on one loop; a None per worker ends the stream."""

    async def main() -> float:
        jobs: asyncio.Queue[int | None] = asyncio.Queue(BUFFER)
        results: asyncio.Queue[int | None] = asyncio.Queue(BUFFER)

        async def produce() -> None:
            for i in range(n):
                await jobs.put(i)
            for _ in range(WORKERS):
                await jobs.put(None)

        async def work() -> None:
            while (x := await jobs.get()) is not None:
                await results.put(x + 1)
            await results.put(None)

        start = time.perf_counter()
        tasks = [asyncio.create_task(produce())]
        tasks += [asyncio.create_task(work()) for _ in range(WORKERS)]
        total, ended = 0, 0
        while ended < WORKERS:
            x = await results.get()
            if x is None:
                ended += 1
            else:
                total += x
        elapsed = time.perf_counter() - start
        await asyncio.gather(*tasks)
        _check(n, total)
        return elapsed

    return asyncio.run(main())


def gorun_chans(n: int, procs: int) -> float:
    """gorun.Chan stages, every stage a go() goroutine; closing ends the stream."""

    async def main() -> float:
        jobs: gorun.Chan[int] = gorun.Chan(BUFFER)
        results: gorun.Chan[int] = gorun.Chan(BUFFER)

        async def produce() -> None:
            for i in range(n):
                await jobs.send(i)
            jobs.close()

        async def work() -> None:
            async for x in jobs:
                await results.send(x + 1)

        async def close_results(wg: gorun.WaitGroup) -> None:
            await wg.wait()
            results.close()

        start = time.perf_counter()
        producer = gorun.go(produce())
        wg = gorun.WaitGroup()
        workers = [wg.go(work()) for _ in range(WORKERS)]
        closer = gorun.go(close_results(wg))
        total = 0
        async for x in results:
            total += x
        elapsed = time.perf_counter() - start
        for g in [producer, *workers, closer]:
            await g
        _check(n, total)
        return elapsed

    return gorun.run(main(), procs=procs)


def trio_channels(n: int) -> float:
    """trio memory channels; each worker holds a clone of the results sender."""
    import trio

    async def main() -> float:
        jobs_tx, jobs_rx = trio.open_memory_channel[int](BUFFER)
        results_tx, results_rx = trio.open_memory_channel[int](BUFFER)

        async def produce() -> None:
            async with jobs_tx:
                for i in range(n):
                    await jobs_tx.send(i)

        async def work(rx: trio.MemoryReceiveChannel[int], tx: trio.MemorySendChannel[int]) -> None:
            async with rx, tx:
                async for x in rx:
                    await tx.send(x + 1)

        total = 0
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with jobs_rx, results_tx:
                for _ in range(WORKERS):
                    nursery.start_soon(work, jobs_rx.clone(), results_tx.clone())
            async with results_rx:
                async for x in results_rx:
                    total += x
            elapsed = time.perf_counter() - start
        _check(n, total)
        return elapsed

    return trio.run(main)


def threads_queues(n: int) -> float:
    """One thread per stage, queue.Queue between them; a None per worker ends the stream."""
    jobs: queue.Queue[int | None] = queue.Queue(BUFFER)
    results: queue.Queue[int | None] = queue.Queue(BUFFER)

    def produce() -> None:
        for i in range(n):
            jobs.put(i)
        for _ in range(WORKERS):
            jobs.put(None)

    def work() -> None:
        while (x := jobs.get()) is not None:
            results.put(x + 1)
        results.put(None)

    start = time.perf_counter()
    threads = [threading.Thread(target=produce)]
    threads += [threading.Thread(target=work) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    total, ended = 0, 0
    while ended < WORKERS:
        x = results.get()
        if x is None:
            ended += 1
        else:
            total += x
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join()
    _check(n, total)
    return elapsed


def cases(procs: int) -> list[Case]:
    """The pipeline case; gorun runs it with 1 worker and with *procs* workers."""
    base = f"asyncio.Queue({BUFFER}), one loop"
    peers: dict[str, Callable[[int], float]] = {base: asyncio_queues}
    targets: list[Goal] = []
    for p in sorted({1, procs}):
        name = f"gorun.Chan({BUFFER}), go() goroutines, procs={p}"
        peers[name] = functools.partial(gorun_chans, procs=p)
        targets.append(Target(name, base, 1.5))
    peers[f"trio memory channels({BUFFER})"] = trio_channels
    peers[f"threads + queue.Queue({BUFFER})"] = threads_queues
    return [
        Case(
            name="pipeline",
            description=f"1 producer -> {WORKERS} workers -> 1 collector over bounded channels",
            unit="item",
            baseline=base,
            peers=peers,
            ops=20_000,
            quick_ops=4_000,
            targets=targets,
        )
    ]
