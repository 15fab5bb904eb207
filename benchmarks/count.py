"""Count instructions per operation: ``python -m benchmarks.count CASE [PEER ...]``.

Wall time on a shared machine moves by several percent from one run to the next, more
than many questions between two peers are worth; an instruction count does not. This
runs each chosen peer of a timed case (every peer if none is named; a PEER may be any
part of a name that picks out one) in a child interpreter under valgrind's callgrind
tool, once with ``--ops`` A operations and once with B, and prints the difference in
instructions divided by the difference in operations: the cost of one operation, free
of the interpreter's start-up, the imports and the peer's own set-up. Both children first
warm the peer up with A operations, so that what is paid once (caches filled, free lists
and tables grown) is paid alike in both and drops out of the difference. Each child
also runs with a fixed hash seed and collects garbage before the measured operations,
so that a child's count repeats to within a few parts in a hundred thousand.

Counts are the whole process's, every thread's. They settle questions of code that one
thread runs; where the peer's behaviour depends on time (a worker's slice, the
monitor's looks, stealing between workers), it runs some fifty times slower under
callgrind and may take another path, so read those counts with care. Needs valgrind
(Debian/Ubuntu: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ._harness import Case
from .cli import all_cases
from .profile import _pick

_ROOT = Path(__file__).resolve().parent.parent  # the repository: the child imports benchmarks

#: callgrind's summary line on stderr: "==123== Collected : 598083727".
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")

#: How a run is counted: (case, peer, operations, warm-up operations) -> instructions
#: (a fake, in tests).
CountRun = Callable[[str, str, int, int], int]


def _tail(output: str) -> str:
    # The end of a child's output, to show with its failure.
    return "\n".join(output.strip().splitlines()[-10:])


def parse_collected(stderr: str) -> int:
    """The instruction count from callgrind's summary in *stderr*.

    Raises:
        RuntimeError: no summary line (the child failed, or valgrind did not run it).
    """
    found = _COLLECTED.findall(stderr)
    if not found:
        raise RuntimeError("callgrind printed no instruction count; its output ended:\n"
                           + _tail(stderr))
    return int(found[-1])


def count_run(case: str, peer: str, ops: int, warm: int, procs: int | None = None) -> int:
    """Instructions of one child interpreter that runs *peer* of *case* with *warm*
    operations, then *ops* (*procs*: as ``python -m benchmarks --procs``)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, "-m", "benchmarks.count", "--child", case, peer, str(ops),
           str(warm), str(procs or 0)]
    # A fixed hash seed: with a random one, where strings fall in dicts and sets moves a
    # child's count by a million instructions or so from one run to the next.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=_ROOT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{peer}: the child exited with {done.returncode}:\n"
                           + _tail(done.stderr))
    return parse_collected(done.stderr)


def check_ops(low: int, high: int) -> None:
    """Raise ValueError unless 0 < *low* < *high*: the two runs' operation counts."""
    if not 0 < low < high:
        raise ValueError(f"the operation counts need 0 < low < high, got {low} and {high}")


def per_op(case: str, peer: str, low: int, high: int, count: CountRun | None = None) -> float:
    """Instructions per operation of *peer*: two runs, *low* and *high* operations, each
    after the same warm-up of *low* operations."""
    check_ops(low, high)
    count = count or count_run
    return (count(case, peer, high, low) - count(case, peer, low, low)) / (high - low)


def _child(case_name: str, peer: str, ops: int, warm: int, procs: int) -> None:
    # Run in the child, under callgrind: warm up, then the measured operations.
    case = {c.name: c for c in all_cases(procs=procs or None)}[case_name]
    assert isinstance(case, Case)
    run = case.peers[peer]
    run(warm)
    gc.collect()  # both children measure from the same collector state
    run(ops)


def main(argv: list[str] | None = None) -> None:
    """Count the chosen peers' instructions per operation and print them side by side."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--child"]:
        _child(args_in[1], args_in[2], *map(int, args_in[3:6]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.count", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case")
    parser.add_argument("peers", nargs="*", help="peers to count (default: all)")
    parser.add_argument("--ops", type=int, nargs=2, metavar=("A", "B"), default=None,
                        help="the two operation counts (default: the case's quick count, "
                             "and three times it)")
    parser.add_argument("--procs", type=int, default=None, help="as python -m benchmarks")
    args = parser.parse_args(args_in)
    if args.ops is not None:
        try:
            check_ops(*args.ops)
        except ValueError as exc:
            parser.error(f"--ops A B: {exc}")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
    timed = {c.name: c for c in all_cases(procs=args.procs) if isinstance(c, Case)}
    case = timed[_pick("case", args.case, list(timed))]
    assert isinstance(case, Case)
    peers = [_pick("peer", p, list(case.peers)) for p in args.peers] or list(case.peers)
    low, high = args.ops or (case.quick_ops, 3 * case.quick_ops)
    if case.baseline in peers:  # the baseline first: the ratios are to it
        peers.remove(case.baseline)
        peers.insert(0, case.baseline)
    print(f"# {case.name}: instructions per {case.unit} (callgrind, {high} - {low} ops); "
          "ratios to the first peer counted (the baseline, if chosen)")
    base: float | None = None
    for peer in peers:
        try:
            figure = per_op(case.name, peer, low, high,
                            lambda c, p, n, w: count_run(c, p, n, w, args.procs))
        except RuntimeError as exc:
            print(f"{peer:56} failed: {exc}")
            continue
        if base is None:
            base = figure
        print(f"{peer:56} {figure:12,.0f}   {figure / base:5.2f}x")


if __name__ == "__main__":
    main()
