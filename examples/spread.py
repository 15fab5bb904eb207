"""Show how gorun spreads goroutines over its worker loops.

Runs two fan-outs with ``gorun.run`` and then the same work with plain ``asyncio.run``:

* CPU: 200 goroutines that each run about 3 ms of pure-Python arithmetic without
  awaiting anything;
* I/O-like: 1000 goroutines that each await ``asyncio.sleep(0.05)``.

For each gorun phase it prints, per worker loop, the OS thread the loop runs on, and how
many goroutines the worker started, stole from other workers' queues, and how many
cross-thread wake-ups it received during the phase (from ``gorun.stats()``, read inside
``main``). Then it prints the wall time of each phase beside plain asyncio's.

Run it from the repository root::

    python examples/spread.py                  # one worker per CPU, or $GORUN_PROCS
    GORUN_PROCS=4 python examples/spread.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import gorun

CPU_GOROUTINES = 200
CPU_SECONDS = 0.003  # pure-Python work per CPU goroutine
IO_GOROUTINES = 1000
IO_SLEEP = 0.05

Job = Callable[[], Coroutine[Any, Any, int]]


def burn(n: int) -> int:
    """Pure-Python work: holds the GIL (on a GIL build) for as long as it runs."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """The number of ``burn`` iterations that take about *seconds* here."""
    n = 10_000
    while True:
        start = time.perf_counter()
        burn(n)
        took = time.perf_counter() - start
        if took > 0.05:
            return max(1, int(n * seconds / took))
        n *= 2


def cpu_job(n: int) -> Job:
    async def job() -> int:
        burn(n)
        return threading.get_ident()

    return job


async def io_job() -> int:
    await asyncio.sleep(IO_SLEEP)
    return threading.get_ident()


@dataclass(frozen=True)
class WorkerRow:
    index: int
    thread_id: int | None
    started: int
    stolen: int
    wakeups: int


@dataclass(frozen=True)
class Phase:
    name: str
    wall: float
    rows: tuple[WorkerRow, ...]
    threads: int  # distinct OS threads the goroutines ran on


async def gorun_phase(name: str, job: Job, count: int) -> Phase:
    """Start *count* goroutines running *job*, await them all, and diff the counters."""
    before = gorun.stats()
    start = time.perf_counter()
    handles = [gorun.go(job(), name=f"{name}-{i}") for i in range(count)]
    ran_on = [await h for h in handles]
    wall = time.perf_counter() - start
    after = gorun.stats()
    rows = tuple(
        WorkerRow(
            index=a.index,
            thread_id=a.thread_id,
            started=a.started - b.started,
            stolen=a.stolen - b.stolen,
            wakeups=a.wakeups - b.wakeups,
        )
        for b, a in zip(before.workers, after.workers, strict=True)
    )
    return Phase(name, wall, rows, len(set(ran_on)))


async def gorun_main(n: int) -> list[Phase]:
    return [
        await gorun_phase("cpu", cpu_job(n), CPU_GOROUTINES),
        await gorun_phase("io", io_job, IO_GOROUTINES),
    ]


async def asyncio_phase(job: Job, count: int) -> float:
    start = time.perf_counter()
    tasks = [asyncio.create_task(job()) for _ in range(count)]
    for t in tasks:
        await t
    return time.perf_counter() - start


async def asyncio_main(n: int) -> tuple[float, float]:
    return (
        await asyncio_phase(cpu_job(n), CPU_GOROUTINES),
        await asyncio_phase(io_job, IO_GOROUTINES),
    )


def gil_line() -> tuple[str, bool]:
    is_gil_enabled: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is None:
        return "sys._is_gil_enabled() not available (Python < 3.13): GIL build", True
    enabled = is_gil_enabled()
    return f"sys._is_gil_enabled() = {enabled}", enabled


def main() -> None:
    gil_text, gil = gil_line()
    procs = gorun.procs()
    n = calibrate(CPU_SECONDS)
    print(f"Python {sys.version.split()[0]}; {gil_text}")
    print(f"os.cpu_count() = {os.cpu_count()}; gorun workers (procs) = {procs}")
    print(
        f"cpu phase: {CPU_GOROUTINES} goroutines x ~{CPU_SECONDS * 1e3:.0f} ms of pure Python; "
        f"io phase: {IO_GOROUTINES} goroutines x asyncio.sleep({IO_SLEEP})"
    )

    phases = gorun.run(gorun_main(n), procs=procs)
    plain_cpu, plain_io = asyncio.run(asyncio_main(n))

    for phase in phases:
        print()
        print(
            f"gorun, {phase.name} phase: wall {phase.wall:.3f} s, "
            f"goroutines ran on {phase.threads} OS thread(s)"
        )
        print(f"  {'worker':>6}  {'thread id':>16}  {'started':>7}  {'stolen':>6}  {'wakeups':>7}")
        for r in phase.rows:
            tid = "-" if r.thread_id is None else str(r.thread_id)
            print(f"  {r.index:>6}  {tid:>16}  {r.started:>7}  {r.stolen:>6}  {r.wakeups:>7}")

    cpu, io = phases
    print()
    gorun_head = f"gorun.run ({procs} loops)"
    print(f"  {'phase':<5}  {gorun_head:>20}  {'asyncio.run':>11}")
    print(f"  {'cpu':<5}  {cpu.wall:>18.3f} s  {plain_cpu:>9.3f} s")
    print(f"  {'io':<5}  {io.wall:>18.3f} s  {plain_io:>9.3f} s")
    print()
    if gil:
        print("This is a GIL build: one thread runs Python code at a time, so CPU-bound work")
        print("does not get faster with more loops. gorun gives concurrency and isolation")
        print("between loops here, not parallelism; on free-threaded CPython the loops run")
        print("Python code in parallel.")
    else:
        print("The GIL is disabled here: the worker loops run Python code in parallel, so the")
        print("cpu phase can get faster with more cores.")


if __name__ == "__main__":
    main()
