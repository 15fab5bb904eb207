"""Memory per parked goroutine: resident memory grown by N waiters, divided by N.

A parked goroutine is ``go(coro)`` where *coro* waits to receive on a channel that never
gets a value. The peers park the same way: an asyncio task on ``Queue.get()``, a trio
task on a memory channel's ``receive()``, a thread on ``queue.Queue.get()``. Each
measurement runs in a fresh interpreter (``python -m benchmarks.cases_memory KIND N``),
so the resident set it reads from ``/proc/self/statm`` holds nothing but that peer: it
reads it once the runtime is up and a first batch is parked, starts and parks N more,
reads it again, and prints the growth per waiter and the time it took per waiter. With
``--trace`` it also prints where that memory was allocated (``tracemalloc``, by line).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._harness import Metric, MetricCase, Sample, Sampler, Target

FIRST = 1_000  # parked before the first reading, so one-off allocations are not counted
KINDS = ("gorun", "asyncio", "trio", "threads")


def rss() -> int:
    """Resident set size of this process, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best stand-in (KiB on Linux, B on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


_trace: list[tracemalloc.Snapshot] = []  # with --trace: the snapshot at the last reading


def _reading() -> tuple[int, float]:
    """The resident set and the clock, before parking a batch."""
    gc.collect()
    if tracemalloc.is_tracing():
        _trace[:] = [tracemalloc.take_snapshot()]
    return rss(), time.perf_counter()


def _print_trace(count: int) -> None:
    """Where the memory of one waiter goes: allocation sites, per waiter (--trace)."""
    stats = tracemalloc.take_snapshot().compare_to(_trace[0], "lineno")
    print(f"{'bytes':>8} {'blocks':>7}  allocated at (per waiter, top 15)")
    for stat in stats[:15]:
        frame = stat.traceback[0]
        print(f"{stat.size_diff / count:8.1f} {stat.count_diff / count:7.2f}  "
              f"{frame.filename}:{frame.lineno}")
    total = sum(stat.size_diff for stat in stats) / count
    print(f"{total:8.1f}          in all (traced Python allocations)")


def _report(before: int, count: int, seconds: float) -> None:
    gc.collect()
    grown = rss() - before
    if tracemalloc.is_tracing():
        _print_trace(count)
    print(json.dumps({"bytes": grown / count, "seconds": seconds / count}), flush=True)
    # Leave at once: shutting down a million waiters would take longer than parking them,
    # and this interpreter exists only to print the line above.
    os._exit(0)


class _Count:
    """Counts waiters as they park; calls *done* when the *n*-th one has."""

    def __init__(self, n: int, done: Callable[[], object]) -> None:
        self.left = n
        self.done = done

    def parked(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done()


def park_gorun(count: int) -> None:
    """Park goroutines on ``Chan.recv()`` (the runtime's default worker count)."""
    import gorun

    async def park(wg: gorun.WaitGroup, never: gorun.Chan[None]) -> None:
        wg.done()
        await never.recv()

    async def main() -> None:
        never: gorun.Chan[None] = gorun.Chan()
        for n, measured in ((FIRST, False), (count, True)):
            before, start = _reading()
            wg = gorun.WaitGroup()
            wg.add(n)
            for _ in range(n):
                gorun.go(park(wg, never))
            await wg.wait()
            if measured:
                _report(before, n, time.perf_counter() - start)

    gorun.run(main())


def park_asyncio(count: int) -> None:
    """Park asyncio tasks on ``Queue.get()``."""
    import asyncio

    async def park(counter: _Count, never: asyncio.Queue[None]) -> None:
        counter.parked()
        await never.get()

    async def main() -> None:
        never: asyncio.Queue[None] = asyncio.Queue()
        tasks = []
        for n, measured in ((FIRST, False), (count, True)):
            before, start = _reading()
            all_parked = asyncio.Event()
            counter = _Count(n, all_parked.set)
            tasks += [asyncio.create_task(park(counter, never)) for _ in range(n)]
            await all_parked.wait()
            if measured:
                _report(before, n, time.perf_counter() - start)

    asyncio.run(main())


def park_trio(count: int) -> None:
    """Park trio tasks on a memory channel's ``receive()``."""
    import trio

    async def park(counter: _Count, never: trio.MemoryReceiveChannel[None]) -> None:
        counter.parked()
        await never.receive()

    async def main() -> None:
        _, never = trio.open_memory_channel[None](0)
        async with trio.open_nursery() as nursery:
            for n, measured in ((FIRST, False), (count, True)):
                before, start = _reading()
                all_parked = trio.Event()
                counter = _Count(n, all_parked.set)
                for _ in range(n):
                    nursery.start_soon(park, counter, never)
                await all_parked.wait()
                if measured:
                    _report(before, n, time.perf_counter() - start)
            nursery.cancel_scope.cancel()

    trio.run(main)


def park_threads(count: int) -> None:
    """Park daemon threads on ``queue.Queue.get()``."""
    import queue

    def park(parked: threading.Semaphore, never: queue.Queue[None]) -> None:
        parked.release()
        never.get()

    never: queue.Queue[None] = queue.Queue()
    for n, measured in ((FIRST, False), (count, True)):
        before, start = _reading()
        parked = threading.Semaphore(0)
        for _ in range(n):
            threading.Thread(target=park, args=(parked, never), daemon=True).start()
        for _ in range(n):
            parked.acquire()
        if measured:
            _report(before, n, time.perf_counter() - start)


def child(kind: str, count: int) -> None:
    """Park *count* waiters of *kind* and print the growth per waiter as JSON."""
    {"gorun": park_gorun, "asyncio": park_asyncio, "trio": park_trio,
     "threads": park_threads}[kind](count)


def measure_child(kind: str, count: int) -> Sample:
    """Run :func:`child` in a fresh interpreter and return its figures."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cases_memory", kind, str(count)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"memory child {kind} {count} failed (exit {proc.returncode}):\n"
                           + proc.stderr[-2000:])
    figures: dict[str, Any] = json.loads(lines[-1])
    return {"bytes": float(figures["bytes"]), "time": float(figures["seconds"])}


def _label(count: int) -> str:
    return f"{count // 1_000_000}M" if count >= 1_000_000 else f"{count // 1_000}k"


def _case(count: int, thread_count: int | None, rounds: int) -> MetricCase:
    c = _label(count)

    def peer(kind: str, n: int) -> Sampler:
        return lambda _quick: measure_child(kind, n)

    peers = {
        f"asyncio task, {c}": peer("asyncio", count),
        f"gorun goroutine, {c}": peer("gorun", count),
        f"trio task, {c}": peer("trio", count),
    }
    if thread_count:
        peers[f"thread, {_label(thread_count)}"] = peer("threads", thread_count)
    return MetricCase(
        name=f"memory-parked-{c}",
        description=f"resident memory per parked goroutine / task / thread ({c})",
        baseline=f"asyncio task, {c}",
        peers=peers,
        measures=[Metric("bytes", "per parked waiter", "B"),
                  Metric("time", "to start and park", "us", 1e6)],
        targets=[Target(f"gorun goroutine, {c}", f"asyncio task, {c}", 1.15)],
        max_rounds=rounds,
    )


def cases(quick: bool) -> list[MetricCase]:
    """The memory cases: 20k waiters (2k threads) with --quick, else 100k (10k) and 1M."""
    if quick:
        return [_case(20_000, 2_000, rounds=1)]
    return [_case(100_000, 10_000, rounds=2), _case(1_000_000, None, rounds=1)]


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3) or args[0] not in KINDS or args[2:] not in ([], ["--trace"]):
        sys.exit(f"usage: python -m benchmarks.cases_memory {{{','.join(KINDS)}}} COUNT [--trace]")
    if args[2:]:
        tracemalloc.start()
    child(args[0], int(args[1]))
