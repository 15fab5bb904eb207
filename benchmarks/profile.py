"""Profile one peer of one case: ``python -m benchmarks.profile CASE PEER``.

Runs the peer once under ``cProfile``, on every thread it starts as well (gorun's worker
threads included: each new thread gets a profiler of its own, and their statistics are
added up at the end), and prints the functions that took the most time. CASE and PEER
may be any part of a name that picks out one. ``--out FILE`` also saves the statistics
for ``pstats`` or a viewer such as snakeviz.

Peers that run in another interpreter (the memory case's children, the echo client)
are profiled only in this one.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._harness import AnyCase, Case
from .cli import all_cases


def _pick(kind: str, wanted: str, names: list[str]) -> str:
    if wanted in names:
        return wanted
    found = [n for n in names if wanted in n]
    if len(found) != 1:
        sys.exit(f"{kind} {wanted!r} matches {found or 'nothing'}; choose from: "
                 + ", ".join(names))
    return found[0]


@contextmanager
def profile_all_threads() -> Iterator[list[cProfile.Profile]]:
    """Profile this thread and every thread started meanwhile; yields the profilers."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original: Any = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        with lock:
            profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    main = cProfile.Profile()
    profiles.append(main)
    threading.Thread.run = run  # type: ignore[method-assign]
    main.enable()
    try:
        yield profiles
    finally:
        main.disable()
        threading.Thread.run = original  # type: ignore[method-assign]


def run_peer(case: AnyCase, peer: str, *, quick: bool, ops: int | None) -> Any:
    """Measure *peer* of *case* once and return what it returned."""
    if isinstance(case, Case):
        n = ops or (case.quick_ops if quick else case.ops)
        return case.peers[peer](n) / n
    return case.peers[peer](quick)


def main(argv: list[str] | None = None) -> None:
    """Profile the chosen peer and print its statistics."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case")
    parser.add_argument("peer")
    parser.add_argument("--quick", action="store_true", help="the --quick operation count")
    parser.add_argument("--ops", type=int, default=None, help="operations (timed cases)")
    parser.add_argument("--procs", type=int, default=None, help="as python -m benchmarks")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    parser.add_argument("--limit", type=int, default=25, help="functions to print")
    parser.add_argument("--out", help="also save the statistics to this file")
    args = parser.parse_args(argv)
    cases = {c.name: c for c in all_cases(quick=args.quick, procs=args.procs)}
    case = cases[_pick("case", args.case, list(cases))]
    peer = _pick("peer", args.peer, list(case.peers))
    run_peer(case, peer, quick=args.quick, ops=args.ops)  # warm-up, unprofiled
    with profile_all_threads() as profiles:
        figure = run_peer(case, peer, quick=args.quick, ops=args.ops)
    stats = pstats.Stats(profiles[0])
    for prof in profiles[1:]:
        stats.add(prof)
    print(f"# {case.name} / {peer}: {figure} (under the profiler); "
          f"{len(profiles)} thread(s) profiled")
    stats.sort_stats(args.sort).print_stats(args.limit)
    if args.out:
        stats.dump_stats(args.out)
        print(f"# saved {args.out}")


if __name__ == "__main__":
    main()
