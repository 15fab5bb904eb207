"""Run peers side by side, interleaved, and report medians, spread and ratios.

Shared machines are noisy, so no figure stands alone: every peer of a case is measured in
the same process, in rounds (one measurement of each peer per round, in a shuffled
order), and each result is reported as a ratio against the case's baseline measured in
the same rounds, with the absolute figure beside it.

There are two kinds of case:

* :class:`Case` times an operation: each peer runs N operations and returns the seconds,
  and the figure is the time per operation.
* :class:`MetricCase` records other figures: each peer returns a :data:`Sample` of named
  metrics (a lateness percentile, bytes per goroutine, ...), described by
  :class:`Metric`. The first metric is the one the ratio column compares.

Both kinds take :class:`Target` goals (a ratio against another peer) and :class:`Limit`
goals (an absolute bound on one metric), and both report the same JSON shape.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A timed peer: given an operation count, run that many operations and return the seconds.
Runner = Callable[[int], float]

#: One measurement of a peer of a :class:`MetricCase`: metric key -> raw value.
Sample = dict[str, float]

#: A peer of a :class:`MetricCase`: given ``quick``, measure once and return a sample.
Sampler = Callable[[bool], Sample]


@dataclass(frozen=True)
class Metric:
    """A figure a case records: raw values times *scale* are shown in *unit*.

    Lower is better for every metric here (times, lateness, bytes).
    """

    key: str
    label: str  # e.g. "per round trip", "p99 lateness"
    unit: str  # e.g. "us", "ms", "B"
    scale: float = 1.0


@dataclass
class Target:
    """A goal: *peer* scores at most *max_ratio* times *against* on *metric*.

    *metric* defaults to the case's first metric (the time per operation of a
    :class:`Case`). *note* says in words what the bound means, when the ratio alone does
    not (e.g. a throughput goal written as a cost ratio).
    """

    peer: str
    against: str
    max_ratio: float
    metric: str | None = None
    note: str = ""


@dataclass
class Limit:
    """A goal: *peer*'s median *metric* is at most *max_value* (raw units, e.g. seconds)."""

    peer: str
    metric: str
    max_value: float
    note: str = ""


Goal = Target | Limit


@dataclass
class Case:
    """One timed benchmark: the same operation done by several peers."""

    name: str
    description: str
    unit: str  # what one operation is, e.g. "round trip"
    baseline: str
    peers: dict[str, Runner]
    ops: int  # operations per measurement
    quick_ops: int
    targets: list[Goal] = field(default_factory=list)
    rate: str | None = None  # also show operations per second, labelled e.g. "requests/s"
    max_rounds: int | None = None  # fewer rounds than the suite's, for slow cases
    reference: str | None = None  # a second peer to show ratios against, beside the baseline

    def metrics(self) -> list[Metric]:
        """The one metric of a timed case: seconds per operation, shown in µs."""
        return [Metric("time", f"per {self.unit}", "us", 1e6)]

    def samplers(self, quick: bool) -> dict[str, Callable[[], Sample]]:
        """One zero-argument measurement per peer, returning its time per operation."""
        ops = self.quick_ops if quick else self.ops

        def timed(run: Runner) -> Callable[[], Sample]:
            return lambda: {"time": run(ops) / ops}

        return {name: timed(run) for name, run in self.peers.items()}

    def warm_up(self, quick: bool) -> None:
        """Run each peer once on a tenth of the operations, unrecorded."""
        ops = self.quick_ops if quick else self.ops
        for run in self.peers.values():
            run(max(1, ops // 10))


@dataclass
class MetricCase:
    """One benchmark whose peers report named metrics rather than a time per operation."""

    name: str
    description: str
    baseline: str
    peers: dict[str, Sampler]
    measures: list[Metric]  # the first is the one ratios compare
    targets: list[Goal] = field(default_factory=list)
    warmup: bool = False  # measure each peer once, unrecorded, before the rounds
    max_rounds: int | None = None
    reference: str | None = None

    @property
    def unit(self) -> str:
        return self.measures[0].label

    @property
    def rate(self) -> str | None:
        return None

    def metrics(self) -> list[Metric]:
        return self.measures

    def samplers(self, quick: bool) -> dict[str, Callable[[], Sample]]:
        def bound(sample: Sampler) -> Callable[[], Sample]:
            return lambda: sample(quick)

        return {name: bound(sample) for name, sample in self.peers.items()}

    def warm_up(self, quick: bool) -> None:
        if self.warmup:
            for sample in self.peers.values():
                sample(quick)


AnyCase = Case | MetricCase


@dataclass
class PeerResult:
    """The samples of one peer, one per round."""

    name: str
    samples: list[Sample] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [s[key] for s in self.samples]

    def median(self, key: str) -> float:
        return statistics.median(self.values(key))

    def spread(self, key: str) -> float:
        """Half the distance between the lowest and highest round, relative to median."""
        values = self.values(key)
        median = statistics.median(values)
        return (max(values) - min(values)) / 2 / median if median else 0.0


def rounds_for(case: AnyCase, rounds: int) -> int:
    """The rounds *case* runs when the suite asks for *rounds*."""
    return min(rounds, case.max_rounds) if case.max_rounds else rounds


def measure(case: AnyCase, *, quick: bool, rounds: int, seed: int) -> dict[str, PeerResult]:
    """Measure every peer of *case* once per round, in a shuffled order each round."""
    samplers = case.samplers(quick)
    results = {name: PeerResult(name) for name in samplers}
    rng = random.Random(seed)
    case.warm_up(quick)
    for _ in range(rounds_for(case, rounds)):
        order = list(samplers)
        rng.shuffle(order)
        for name in order:
            results[name].samples.append(samplers[name]())
    return results


def round_figures(values: list[float], against: list[float] | None = None) -> list[float]:
    """A goal's figure in each round: a peer's *values*, or their ratios to *against*.

    Round i of one peer and round i of another were measured in the same round, so
    their ratio is free of the drift between rounds (a slower machine for a while).
    """
    if against is None:
        return list(values)
    if len(values) != len(against):
        raise ValueError(f"{len(values)} rounds against {len(against)}: the rounds of two "
                         "peers of one case are paired, so their counts must match")
    return [v / a for v, a in zip(values, against, strict=True)]


def round_confidence(rounds: int) -> float:
    """How likely the median of a figure measured in *rounds* rounds lies between the
    lowest and the highest round, whatever the distribution of the noise: all rounds
    fall on one side of the median with probability 2 x 2**-rounds."""
    return 1 - 2.0 ** (1 - rounds) if rounds > 0 else 0.0


def unsettled(figures: list[float], bound: float) -> bool:
    """Whether *bound* lies within the range of the per-round *figures*: the rounds do
    not settle the goal (see `round_confidence`), and another run may turn it."""
    return bool(figures) and min(figures) <= bound < max(figures)


def goal_rounds(case: dict[str, Any], goal: dict[str, Any]) -> list[float]:
    """A goal's figure in each round, from a case and goal as `report` writes them: as
    stored, or (a result written before rounds were stored) from the peers' values,
    which are kept in round order."""
    if "rounds" in goal:
        return [float(v) for v in goal["rounds"]]
    values = {p["peer"]: p["metrics"][goal["metric"]]["values"] for p in case["peers"]}
    if goal["kind"] == "ratio":
        return round_figures(values[goal["peer"]], values[goal["against"]])
    return round_figures(values[goal["peer"]])


def _rounds_text(figures: list[float], bound: float, fmt: str) -> str:
    # The console's note on a goal's rounds: their range, and whether it holds the bound.
    lo, hi = format(min(figures), fmt), format(max(figures), fmt)
    return f" (rounds {lo} to {hi}{', unsettled' if unsettled(figures, bound) else ''})"


def _verdict(case: AnyCase, goal: Goal, results: dict[str, PeerResult]) -> dict[str, Any]:
    metrics = {m.key: m for m in case.metrics()}
    if isinstance(goal, Target):
        key = goal.metric or case.metrics()[0].key
        ratio = results[goal.peer].median(key) / results[goal.against].median(key)
        figures = round_figures(results[goal.peer].values(key),
                                results[goal.against].values(key))
        met = ratio <= goal.max_ratio
        note = f" ({goal.note})" if goal.note else ""
        label = "" if key == case.metrics()[0].key else f" {metrics[key].label}"
        print(
            f"  target {goal.peer}{label} <= {goal.max_ratio:.3g}x {goal.against}{note}: "
            f"{ratio:.2f}x {'MET' if met else 'NOT MET'}"
            + _rounds_text(figures, goal.max_ratio, ".2f")
        )
        return {"kind": "ratio", "peer": goal.peer, "against": goal.against, "metric": key,
                "max_ratio": goal.max_ratio, "ratio": ratio, "met": met, "note": goal.note,
                "rounds": figures, "unsettled": unsettled(figures, goal.max_ratio)}
    m = metrics[goal.metric]
    value = results[goal.peer].median(goal.metric)
    figures = [v * m.scale for v in results[goal.peer].values(goal.metric)]
    bound = goal.max_value * m.scale
    met = value <= goal.max_value
    note = f" ({goal.note})" if goal.note else ""
    print(
        f"  target {goal.peer} {m.label} <= {bound:.3g} {m.unit}{note}: "
        f"{value * m.scale:.3g} {m.unit} {'MET' if met else 'NOT MET'}"
        + _rounds_text(figures, bound, ".3g")
    )
    return {"kind": "limit", "peer": goal.peer, "metric": goal.metric, "unit": m.unit,
            "max_value": bound, "value": value * m.scale, "met": met, "note": goal.note,
            "rounds": figures, "unsettled": unsettled(figures, bound)}


def report(case: AnyCase, results: dict[str, PeerResult]) -> dict[str, Any]:
    """Print *case*'s table and goal verdicts; return them as a JSON-ready dict."""
    metrics = case.metrics()
    primary = metrics[0]
    base = results[case.baseline].median(primary.key)
    print(f"\n## {case.name}: {case.description}")
    header = f"{'peer':48}"
    for m in metrics:
        header += f" {m.label + ' (' + m.unit + ')':>22}"
    if case.rate:
        header += f" {case.rate:>12}"
    header += f" {'spread':>7} {'ratio':>7}"
    ref = results[case.reference].median(primary.key) if case.reference else None
    if case.reference:
        header += f"  vs {case.reference}"
    print(header)
    rows = []
    for name, res in results.items():
        ratio = res.median(primary.key) / base
        line = f"{name:48}"
        for m in metrics:
            line += f" {res.median(m.key) * m.scale:22.4g}"
        if case.rate:
            line += f" {1 / res.median(primary.key):12,.0f}"
        line += f" {res.spread(primary.key):7.0%} {ratio:6.2f}x"
        if ref is not None:
            line += f"  {res.median(primary.key) / ref:6.2f}x"
        print(line + (" (baseline)" if name == case.baseline else ""))
        row: dict[str, Any] = {
            "peer": name,
            "ratio": ratio,
            "spread": res.spread(primary.key),
            "metrics": {
                m.key: {
                    "median": res.median(m.key) * m.scale,
                    "spread": res.spread(m.key),
                    "values": [v * m.scale for v in res.values(m.key)],
                }
                for m in metrics
            },
        }
        if ref is not None:
            row["vs_reference"] = res.median(primary.key) / ref
        if isinstance(case, Case):
            row["median_us"] = res.median(primary.key) * 1e6
            row["per_op_us"] = [v * 1e6 for v in res.values(primary.key)]
        rows.append(row)
    verdicts = [_verdict(case, goal, results) for goal in case.targets]
    out: dict[str, Any] = {
        "case": case.name,
        "kind": "time" if isinstance(case, Case) else "metric",
        "description": case.description,
        "unit": case.unit,
        "baseline": case.baseline,
        "metrics": [{"key": m.key, "label": m.label, "unit": m.unit} for m in metrics],
        "rate": case.rate,
        "reference": case.reference,
        "peers": rows,
        "targets": verdicts,
    }
    return out


def gil_enabled() -> bool:
    """Whether the running interpreter has the GIL on (always True before 3.13)."""
    is_enabled: Callable[[], bool] = getattr(sys, "_is_gil_enabled", lambda: True)
    return is_enabled()


def has_uvloop() -> bool:
    """Whether uvloop can be imported here (its peers are left out where it cannot)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> dict[str, Any]:
    """What the results were measured on."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "gil": gil_enabled(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
