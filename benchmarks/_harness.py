"""Run peers side by side, interleaved, and report medians, spread and ratios.

Shared machines are noisy, so no figure stands alone: every peer of a case is measured in
the same process, in rounds (one measurement of each peer per round, in a shuffled
order), and each result is reported as a ratio against the case's baseline measured in
the same rounds, with the absolute time beside it.
"""

from __future__ import annotations

import platform
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A peer: given an operation count, run that many operations and return the seconds.
Runner = Callable[[int], float]


@dataclass
class Target:
    """A goal: *peer* costs at most *max_ratio* times *against*, per operation."""

    peer: str
    against: str
    max_ratio: float


@dataclass
class Case:
    """One benchmark: the same operation done by several peers."""

    name: str
    description: str
    unit: str  # what one operation is, e.g. "round trip"
    baseline: str
    peers: dict[str, Runner]
    ops: int  # operations per measurement
    quick_ops: int
    targets: list[Target] = field(default_factory=list)


@dataclass
class PeerResult:
    name: str
    per_op: list[float]  # seconds per operation, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.per_op)

    @property
    def spread(self) -> float:
        """Half the distance between the fastest and slowest round, relative to median."""
        return (max(self.per_op) - min(self.per_op)) / 2 / self.median


def measure(case: Case, *, quick: bool, rounds: int, seed: int) -> dict[str, PeerResult]:
    ops = case.quick_ops if quick else case.ops
    results = {name: PeerResult(name, []) for name in case.peers}
    rng = random.Random(seed)
    for run in case.peers.values():  # warm-up, not recorded
        run(max(1, ops // 10))
    for _ in range(rounds):
        order = list(case.peers)
        rng.shuffle(order)
        for name in order:
            results[name].per_op.append(case.peers[name](ops) / ops)
    return results


def report(case: Case, results: dict[str, PeerResult]) -> dict[str, Any]:
    base = results[case.baseline].median
    rows = []
    print(f"\n## {case.name}: {case.description}")
    print(f"{'peer':44} {'per ' + case.unit:>16} {'spread':>8} {'ratio':>7}")
    for name, res in results.items():
        ratio = res.median / base
        rows.append(
            {
                "peer": name,
                "median_us": res.median * 1e6,
                "spread": res.spread,
                "ratio": ratio,
                "per_op_us": [x * 1e6 for x in res.per_op],
            }
        )
        mark = " (baseline)" if name == case.baseline else ""
        print(f"{name:44} {res.median * 1e6:13.2f} us {res.spread:7.0%} {ratio:6.2f}x{mark}")
    verdicts = []
    for t in case.targets:
        ratio = results[t.peer].median / results[t.against].median
        met = ratio <= t.max_ratio
        verdicts.append(
            {"peer": t.peer, "against": t.against, "max_ratio": t.max_ratio,
             "ratio": ratio, "met": met}
        )
        print(
            f"  target {t.peer} <= {t.max_ratio}x {t.against}: {ratio:.2f}x "
            f"{'MET' if met else 'NOT MET'}"
        )
    return {"case": case.name, "description": case.description, "unit": case.unit,
            "baseline": case.baseline, "peers": rows, "targets": verdicts}


def machine() -> dict[str, Any]:
    import os

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "gil": gil,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
