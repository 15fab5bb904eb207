"""Fan CPU work out over goroutines with ``gorun.go`` and collect the results.

Counts the primes below a limit by splitting the range into chunks, one goroutine per
chunk. ``gorun.go`` returns a handle at once; awaiting the handle gives the goroutine's
return value (or raises its exception). Then hashes blocks of data, one goroutine per
block. After each phase it prints the result and how many goroutines each worker loop
started and stole.

Run it from the repository root::

    python examples/fanout.py        # default worker count ($GORUN_PROCS, else CPU count)
    python examples/fanout.py 4      # four worker loops

With the GIL the prime chunks (pure Python) do not run in parallel: the worker loops
take turns, and the loop that spawned them keeps them. The hashing goroutines do:
``hashlib`` releases the GIL, gorun sees that the busy loop leaves it free, and idle
loops steal goroutines from it. On free-threaded CPython both phases run in parallel.
"""

from __future__ import annotations

import hashlib
import sys
import time

import gorun

LIMIT = 200_000
CHUNKS = 40
BLOCKS = 200
BLOCK = bytes(range(256)) * 4096  # 1 MiB


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


async def digest(i: int) -> bytes:
    """SHA-256 of a 1 MiB block: hashlib computes it with the GIL released."""
    h = hashlib.sha256(i.to_bytes(4, "big"))
    h.update(BLOCK)
    return h.digest()


def print_spread(before: gorun.Stats) -> None:
    """How many goroutines each worker loop started and stole since *before*."""
    stats = gorun.stats()
    print(f"  worker loops: {stats.procs}; goroutines per worker:")
    for w, b in zip(stats.workers, before.workers, strict=True):
        print(f"    worker {w.index}: started {w.started - b.started:3d}, "
              f"stolen {w.stolen - b.stolen:3d}")


async def main() -> None:
    step = -(-LIMIT // CHUNKS)  # ceiling division
    before = gorun.stats()
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
    print_spread(before)

    before = gorun.stats()
    start = time.perf_counter()
    digests = [gorun.go(digest(i), name=f"sha256-{i}") for i in range(BLOCKS)]
    distinct = len({await h for h in digests})
    wall = time.perf_counter() - start
    print(f"SHA-256 of {BLOCKS} blocks of 1 MiB: {distinct} distinct digests ({wall:.2f} s)")
    print_spread(before)


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
