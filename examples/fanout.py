"""Fan CPU work out over goroutines with ``gorun.go`` and collect the results.

Counts the primes below a limit by splitting the range into chunks, one goroutine per
chunk. ``gorun.go`` returns a handle at once; awaiting the handle gives the goroutine's
return value (or raises its exception). At the end it prints the result and how many
goroutines each worker loop started.

Run it from the repository root::

    python examples/fanout.py        # default worker count ($GORUN_PROCS, else CPU count)
    python examples/fanout.py 4      # four worker loops

With the GIL the chunks do not run in parallel; they run concurrently, on whichever
worker loop picked them up. On free-threaded CPython they run in parallel.
"""

from __future__ import annotations

import sys
import time

import gorun

LIMIT = 200_000
CHUNKS = 40


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


async def count_primes(lo: int, hi: int) -> int:
    """Count the primes in [lo, hi). Pure Python, no awaits: it holds its loop until done."""
    return sum(1 for n in range(lo, hi) if is_prime(n))


async def main() -> None:
    step = -(-LIMIT // CHUNKS)  # ceiling division
    start = time.perf_counter()
    handles = [
        gorun.go(count_primes(lo, min(lo + step, LIMIT)), name=f"primes-{lo}")
        for lo in range(0, LIMIT, step)
    ]
    total = 0
    for h in handles:
        total += await h
    wall = time.perf_counter() - start

    print(f"primes below {LIMIT}: {total} ({len(handles)} goroutines, {wall:.2f} s)")
    stats = gorun.stats()
    print(f"worker loops: {stats.procs}; goroutines per worker:")
    for w in stats.workers:
        print(f"  worker {w.index}: started {w.started:3d}, stolen {w.stolen:3d}")


def parse_procs(argv: list[str]) -> int | None:
    if len(argv) > 2:
        sys.exit(f"usage: {argv[0]} [PROCS]")
    if len(argv) == 2:
        if not argv[1].isdigit() or int(argv[1]) < 1:
            sys.exit(f"PROCS must be a positive integer, got {argv[1]!r}")
        return int(argv[1])
    return None  # gorun's default: $GORUN_PROCS, else os.cpu_count()


if __name__ == "__main__":
    procs = parse_procs(sys.argv)
    gorun.run(main(), procs=procs)
