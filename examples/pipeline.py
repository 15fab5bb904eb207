"""A pipeline over channels: a generator, a stage of N parallel goroutines, a collector.

::

    generate --numbers--> search x N --found--> collect (main)

``generate`` sends the numbers 0, 1, 2, ... on the ``numbers`` channel. N ``search``
goroutines, started with ``gorun.go`` (through a ``WaitGroup``) and so spread over the
worker loops, all receive from that one channel (fan-out). Each hashes its numbers and
sends those whose SHA-256 digest starts with ``00`` on ``found``, which they share
(fan-in). ``main`` collects from ``found``.

Close propagation: every stage closes its output when it will send no more.
``generate`` closes ``numbers`` after its last number. The searchers share ``found``, so
none of them can tell that it is the last one: a ``WaitGroup`` counts them, and a small
goroutine closes ``found`` after ``wg.wait()``. Each searcher stops when ``numbers`` is
closed and drained, and the collector's ``async for`` ends when ``found`` is.

Early cancellation: every stage also watches a ``done`` channel, in the same ``select``
as each of its channel operations. The first run goes to the end; the second wants only
the first few matches, so the collector closes ``done`` once it has them, which stops
the generator and every searcher, on whichever loop they run. They still close their
outputs on the way out.

Run it from the repository root::

    python examples/pipeline.py        # one worker loop per CPU, or $GORUN_PROCS

The matches are the same on every run. Which searcher hashed how many numbers, on which
thread, how far the generator got before the early stop, and the timings depend on
scheduling.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

import gorun

COUNT = 20_000  # numbers to search
SEARCHERS = 4  # goroutines in the middle stage
PREFIX = "00"  # a match: a digest that starts with this (1 number in 256)
FIRST = 5  # the early-stopped run wants this many matches
BUFFER = 64  # channel buffers: fewer hand-offs between threads

Match = tuple[int, str]  # (number, digest)


def digest(n: int) -> str:
    return hashlib.sha256(f"gorun-{n}".encode()).hexdigest()


@dataclass
class SearcherStats:
    searcher: int
    thread: str
    hashed: int = 0
    matches: int = 0


async def generate(count: int, out: gorun.Chan[int], done: gorun.Chan[None]) -> int:
    """Send 0..count-1 on *out* until *done* is closed; close *out*. Return how many sent."""
    sent = 0
    try:
        for n in range(count):
            index, _ = await gorun.select((out.send, n), done.recv_ok)
            if index == 1:  # done is closed: stop early
                break
            sent += 1
    finally:
        out.close()  # the sender closes, however it stops
    return sent


async def search(
    index: int,
    numbers: gorun.Chan[int],
    found: gorun.Chan[Match],
    done: gorun.Chan[None],
) -> SearcherStats:
    """Hash numbers from *numbers*; send the matches on *found*, until either ends."""
    stats = SearcherStats(index, threading.current_thread().name)
    while True:
        # Both cases are recv_ok: the value is (n, True), or (None, False) once numbers
        # is closed and drained (the end of the input) or for the closed done channel.
        case, (n, ok) = await gorun.select(numbers.recv_ok, done.recv_ok)
        if case == 1 or not ok:
            return stats
        stats.hashed += 1
        d = digest(n)
        if d.startswith(PREFIX):
            case, _ = await gorun.select((found.send, (n, d)), done.recv_ok)
            if case == 1:
                return stats
            stats.matches += 1


async def close_when_done(wg: gorun.WaitGroup, ch: gorun.Chan[Match]) -> None:
    """Close *ch* once every goroutine counted by *wg* has finished."""
    await wg.wait()
    ch.close()


@dataclass
class Outcome:
    matches: list[Match]
    sent: int
    searchers: list[SearcherStats]
    seconds: float


async def run_pipeline(first: int | None) -> Outcome:
    """Run the pipeline over COUNT numbers; stop after *first* matches unless None."""
    start = time.perf_counter()
    numbers: gorun.Chan[int] = gorun.Chan(BUFFER)
    found: gorun.Chan[Match] = gorun.Chan(BUFFER)
    done: gorun.Chan[None] = gorun.Chan()  # never sent on: closed to say "stop"

    generator = gorun.go(generate(COUNT, numbers, done), name="generate")
    wg = gorun.WaitGroup()
    searchers = [
        wg.go(search(i, numbers, found, done), name=f"search-{i}") for i in range(SEARCHERS)
    ]
    closer = gorun.go(close_when_done(wg, found), name="close-found")

    matches: list[Match] = []
    async for match in found:
        matches.append(match)
        if first is not None and len(matches) == first:
            done.close()  # one close stops every stage
            break

    sent = await generator
    stats = [await s for s in searchers]
    await closer
    return Outcome(matches, sent, stats, time.perf_counter() - start)


def report_stages(outcome: Outcome) -> None:
    print(f"  generator sent {outcome.sent} numbers; per searcher (depends on scheduling):")
    for s in outcome.searchers:
        print(
            f"    search-{s.searcher} on {s.thread:16} hashed {s.hashed:5d}, "
            f"matches sent {s.matches:3d}"
        )
    print(f"  {outcome.seconds:.2f} s")


async def main() -> None:
    expected = [n for n in range(COUNT) if digest(n).startswith(PREFIX)]
    print(f"{gorun.procs()} worker loops, {SEARCHERS} searchers, numbers 0..{COUNT - 1}")

    print(f"\nrun 1: to the end, every number whose SHA-256 starts with {PREFIX!r}")
    full = await run_pipeline(first=None)
    numbers = sorted(n for n, _ in full.matches)
    assert numbers == expected, "the pipeline lost or duplicated a match"
    assert sum(s.hashed for s in full.searchers) == COUNT
    print(f"  {len(numbers)} matches; the five smallest:")
    for n, d in sorted(full.matches)[:5]:
        print(f"    {n:5d}  {d[:16]}...")
    report_stages(full)

    print(f"\nrun 2: stop after the first {FIRST} matches (close done)")
    early = await run_pipeline(first=FIRST)
    assert len(early.matches) == FIRST
    assert {n for n, _ in early.matches} <= set(expected)
    print(f"  got {len(early.matches)} matches, closed done; every stage stopped")
    report_stages(early)

    print(f"\ngoroutines still running: {gorun.num_goroutine()}")


if __name__ == "__main__":
    gorun.run(main())
