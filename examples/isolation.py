"""Show that a blocking call on one gorun loop does not stall goroutines on another.

A ticker wants to wake every 10 ms and records how late each wake-up is. While it runs,
a blocker calls ``time.sleep(0.2)``: a blocking call that freezes the event loop it runs
on. The program runs this twice and prints the ticker's worst lateness each time:

* with ``gorun.run(procs=2)``, ticker and blocker on different worker loops;
* with plain ``asyncio.run``, both on the one loop, where the ticker stalls until the
  blocker returns.

The numbers are measured, not asserted; they depend on the machine and its load.

Run it from the repository root::

    python examples/isolation.py
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import gorun

TICK = 0.01  # the ticker's period
RUN_FOR = 0.6  # how long the ticker runs
BLOCK_AFTER = 0.15  # when the blocker blocks, after it starts
BLOCK_FOR = 0.2  # how long it blocks


@dataclass(frozen=True)
class TickReport:
    thread_id: int
    ticks: int
    max_late: float


async def ticker(started: threading.Event) -> TickReport:
    """Wake every TICK seconds for RUN_FOR seconds; return the worst lateness."""
    started.set()
    ticks = 0
    max_late = 0.0
    begin = time.monotonic()
    deadline = begin + TICK
    while deadline < begin + RUN_FOR:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        max_late = max(max_late, time.monotonic() - deadline)
        ticks += 1
        deadline += TICK
    return TickReport(threading.get_ident(), ticks, max_late)


async def blocker() -> int:
    """Let the ticker run a while, then block this goroutine's loop for BLOCK_FOR seconds."""
    await asyncio.sleep(BLOCK_AFTER)
    time.sleep(BLOCK_FOR)  # blocking: nothing else runs on this loop meanwhile  # noqa: ASYNC251
    return threading.get_ident()


async def on_gorun() -> tuple[TickReport, int, dict[int, int]]:
    started = threading.Event()
    tick = gorun.go(ticker(started), name="ticker")
    # The ticker waits in this worker's "runnext" slot, to start on this loop (worker 0)
    # when main next yields. Instead, main blocks this loop until the ticker has started:
    # gorun's monitor thread sees the ticker waiting past its grace period and wakes the
    # idle worker, which steals it and starts it on its own thread.
    if not started.wait(timeout=2.0):  # blocking on purpose, and bounded
        print("note: no idle worker took the ticker within 2 s")
    # The blocker waits in this worker's runnext slot and starts here, on worker 0.
    block = gorun.go(blocker(), name="blocker")
    report = await tick
    blocker_thread = await block
    workers = {w.thread_id: w.index for w in gorun.stats().workers if w.thread_id is not None}
    return report, blocker_thread, workers


async def on_asyncio() -> tuple[TickReport, int]:
    started = threading.Event()
    tick = asyncio.create_task(ticker(started))
    block = asyncio.create_task(blocker())
    return await tick, await block


def main() -> None:
    print(
        f"ticker: every {TICK * 1e3:.0f} ms for {RUN_FOR} s; "
        f"blocker: time.sleep({BLOCK_FOR}) {BLOCK_AFTER} s after it starts\n"
    )

    report, blocker_thread, workers = gorun.run(on_gorun(), procs=2)
    tw = workers.get(report.thread_id, "?")
    bw = workers.get(blocker_thread, "?")
    print(f"gorun.run(procs=2): ticker on worker {tw}, blocker on worker {bw}")
    print(f"  ticks: {report.ticks}, max lateness: {report.max_late * 1e3:.1f} ms")
    if report.thread_id == blocker_thread:
        print("  (both landed on one worker this time, so the ticker stalled with the blocker)")

    plain, _ = asyncio.run(on_asyncio())
    print("asyncio.run: ticker and blocker on the one loop")
    print(f"  ticks: {plain.ticks}, max lateness: {plain.max_late * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
