"""Latency isolation: how late a 1 ms ticker wakes while another goroutine blocks its loop.

A ticker coroutine wants to wake every millisecond and records, for every tick, how long
after its due time it woke (a tick due while the ticker could not run is late by the
whole stall: the ticker catches up one tick at a time, as a loop of ``asyncio.sleep``
does). Meanwhile a blocker stalls its own event loop for 100 ms at a time, either with
``time.sleep`` (which releases the GIL) or with a pure-Python loop (which holds it).

On gorun (procs=2) the ticker runs on one worker and the blocker on the other; on a
plain asyncio loop both share the loop. Two plain asyncio loops on two threads, without
gorun, show what the OS and the GIL allow on the machine; with the CPU blocker, a peer
with ``sys.setswitchinterval(0.001)`` shows how much of the lateness is the GIL's switch
interval (5 ms by default): the time a thread that wakes up waits for a thread running
Python code to hand the GIL over. This case sleeps on purpose: timer lateness is
what it measures.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable

import gorun

from ._harness import Limit, Metric, MetricCase, Sample, Sampler

TICK = 0.001  # the ticker's period
BLOCK = 0.1  # how long each block lasts
GAP = 0.1  # ticker-only time before each block


def _plan(quick: bool) -> tuple[int, float]:
    """How many blocks, and how long the ticker runs: until GAP after the last block."""
    blocks = 1 if quick else 2
    return blocks, blocks * (GAP + BLOCK) + GAP


def block_sleep() -> None:
    """Block the loop with a call that releases the GIL."""
    time.sleep(BLOCK)


def block_cpu() -> None:
    """Block the loop with pure-Python work that holds the GIL (but for switch requests)."""
    end = time.perf_counter() + BLOCK
    x = 0
    while time.perf_counter() < end:
        for i in range(100):
            x = (x + i * i) % 1_000_003


async def ticker(run_for: float, started: threading.Event) -> tuple[list[float], int]:
    """Tick every TICK seconds for *run_for* seconds; return each tick's lateness."""
    started.set()
    late: list[float] = []
    deadline = time.monotonic() + TICK
    end = deadline + run_for
    while deadline < end:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        late.append(time.monotonic() - deadline)
        deadline += TICK
    return late, threading.get_ident()


async def blocker(block: Callable[[], None], blocks: int) -> int:
    """GAP seconds after it starts and after each block, block the loop for BLOCK seconds."""
    for _ in range(blocks):
        await asyncio.sleep(GAP)
        block()
    return threading.get_ident()


def _sample(late: list[float]) -> Sample:
    cuts = statistics.quantiles(late, n=100, method="inclusive")
    return {"p99": cuts[98], "p50": statistics.median(late), "max": max(late)}


def on_asyncio(quick: bool, block: Callable[[], None]) -> Sample:
    """Ticker and blocker as two tasks of one asyncio loop."""
    blocks, run_for = _plan(quick)

    async def main() -> list[float]:
        tick = asyncio.create_task(ticker(run_for, threading.Event()))
        stall = asyncio.create_task(blocker(block, blocks))
        late, _ = await tick
        await stall
        return late

    return _sample(asyncio.run(main()))


def on_threads(quick: bool, block: Callable[[], None]) -> Sample:
    """Ticker and blocker on two plain asyncio loops of two threads, without gorun.

    The figure the OS and the GIL allow: what is left of gorun's lateness above it is
    gorun's own.
    """
    blocks, run_for = _plan(quick)
    late: list[float] = []

    def tick() -> None:
        late.extend(asyncio.run(ticker(run_for, threading.Event()))[0])

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        asyncio.run(blocker(block, blocks))
    finally:
        thread.join()
    return _sample(late)


def on_gorun(
    quick: bool, block: Callable[[], None], switch_interval: float | None = None
) -> Sample:
    """Ticker and blocker as goroutines on two different workers of a procs=2 runtime."""
    blocks, run_for = _plan(quick)

    async def main() -> list[float]:
        started = threading.Event()
        tick = gorun.go(ticker(run_for, started))
        # The ticker waits in this worker's runnext slot. Block this loop until it has
        # started: an idle worker steals it once it has waited past its grace period.
        if not started.wait(timeout=2.0):
            print("  note: no idle worker took the ticker within 2 s", file=sys.stderr)
        stall = gorun.go(blocker(block, blocks), local=True)  # stays on this worker
        late, ticker_thread = await tick
        if await stall == ticker_thread:
            print("  note: ticker and blocker ran on the same worker", file=sys.stderr)
        return late

    previous = sys.getswitchinterval()
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    try:
        return _sample(gorun.run(main(), procs=2))
    finally:
        sys.setswitchinterval(previous)


def _case(kind: str, what: str, block: Callable[[], None]) -> MetricCase:
    base = "asyncio, one loop"
    apart = "gorun procs=2, ticker and blocker apart"
    peers: dict[str, Sampler] = {
        base: lambda quick: on_asyncio(quick, block),
        apart: lambda quick: on_gorun(quick, block),
    }
    peers["asyncio loops on two threads, no gorun"] = lambda quick: on_threads(quick, block)
    if kind == "cpu":
        peers[apart + ", switch interval 1 ms"] = lambda quick: on_gorun(quick, block, 0.001)
    return MetricCase(
        name=f"latency-isolation-{kind}",
        description=f"1 ms ticker lateness while another goroutine blocks for "
        f"{BLOCK * 1e3:.0f} ms ({what})",
        baseline=base,
        peers=peers,
        measures=[Metric("p99", "p99 lateness", "ms", 1e3),
                  Metric("p50", "p50 lateness", "ms", 1e3),
                  Metric("max", "max lateness", "ms", 1e3)],
        targets=[Limit(apart, "p99", 0.005)],
    )


def cases() -> list[MetricCase]:
    """The two latency cases: a blocker that sleeps, and one that computes."""
    return [
        _case("sleep", "time.sleep", block_sleep),
        _case("cpu", "pure-Python loop", block_cpu),
    ]
