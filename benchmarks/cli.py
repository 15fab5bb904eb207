"""Command line: ``python -m benchmarks [--quick] [--json PATH] [--only NAME] [--rounds N]``.

``--procs N`` sets the largest worker count of the cases that compare worker counts
(default: the CPU count); ``--note TEXT`` stores a word about the machine in the JSON,
which ``python -m benchmarks.report`` prints with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import gorun

from . import (
    cases_channels,
    cases_cpu,
    cases_latency,
    cases_memory,
    cases_pipeline,
    cases_select,
    cases_serving,
    cases_spawn,
    cases_tcp,
)
from ._harness import AnyCase, machine, measure, report, rounds_for


def _commit() -> str | None:
    """The repository's commit, with ``+`` if ``src/`` has local changes; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty.strip() else "")


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the OS tells them."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def all_cases(*, quick: bool = False, procs: int | None = None) -> list[AnyCase]:
    """Every case, in the order they run; *procs* is the largest worker count compared."""
    n = procs or os.cpu_count() or 1
    return [
        *cases_channels.cases(),
        *cases_spawn.cases(),
        *cases_pipeline.cases(n),
        *cases_select.cases(),
        *cases_cpu.cases(n),
        *cases_memory.cases(quick),
        *cases_latency.cases(),
        *cases_tcp.cases(n),
        *cases_serving.cases(n),
        *cases_serving.framework_cases(n),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the cases, print their tables and write the JSON file if asked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only cases whose name contains NAME (repeatable)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case")
    parser.add_argument("--seed", type=int, default=1, help="seed for the round order")
    parser.add_argument("--procs", type=int, default=None,
                        help="largest worker count compared (default: CPU count)")
    parser.add_argument("--note", default="", help="a word about the machine, kept in the JSON")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.procs is not None and args.procs < 1:
        parser.error("--procs must be at least 1")
    rounds = args.rounds or (3 if args.quick else 7)
    cases = all_cases(quick=args.quick, procs=args.procs)
    if args.list:
        for c in cases:
            print(f"{c.name:28} {c.description}")
        return
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
        if not cases:
            parser.error(f"no case matches {args.only}; cases: "
                         + ", ".join(c.name for c in all_cases(quick=args.quick)))
    info = machine()
    print(f"# gorun benchmarks ({'quick' if args.quick else 'full'}, {rounds} rounds)")
    print("# " + ", ".join(f"{k}={v}" for k, v in info.items()))
    out: dict[str, Any] = {"machine": info, "note": args.note, "rounds": rounds,
                           "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                           "gorun": gorun.__version__, "commit": _commit(), "cases": []}
    out["load_start"] = _load()
    start = time.perf_counter()
    for case in cases:
        began = time.perf_counter()
        results = measure(case, quick=args.quick, rounds=rounds, seed=args.seed)
        entry = report(case, results)
        entry["rounds"] = rounds_for(case, rounds)
        entry["seconds"] = time.perf_counter() - began
        print(f"  ({entry['rounds']} rounds, {entry['seconds']:.1f} s)")
        out["cases"].append(entry)
    out["seconds"] = time.perf_counter() - start
    out["load_end"] = _load()
    print(f"\n# total {out['seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"# wrote {args.json}")
