"""Command line: ``python -m benchmarks [--quick] [--json PATH] [--only NAME] [--rounds N]``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from . import cases_channels, cases_spawn
from ._harness import Case, machine, measure, report


def all_cases() -> list[Case]:
    return [*cases_channels.cases(), *cases_spawn.cases()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only cases whose name contains NAME (repeatable)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case")
    parser.add_argument("--seed", type=int, default=1, help="seed for the round order")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    cases = all_cases()
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
        if not cases:
            parser.error(f"no case matches {args.only}; cases: "
                         + ", ".join(c.name for c in all_cases()))
    info = machine()
    print(f"# gorun benchmarks ({'quick' if args.quick else 'full'}, {rounds} rounds)")
    print("# " + ", ".join(f"{k}={v}" for k, v in info.items()))
    out: dict[str, Any] = {"machine": info, "rounds": rounds, "quick": args.quick, "cases": []}
    start = time.perf_counter()
    for case in cases:
        results = measure(case, quick=args.quick, rounds=rounds, seed=args.seed)
        out["cases"].append(report(case, results))
    out["seconds"] = time.perf_counter() - start
    print(f"\n# total {out['seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"# wrote {args.json}")
