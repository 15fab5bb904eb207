"""Draw PNG charts from a JSON result: ``python -m benchmarks.chart RESULTS.json``.

One chart per case (``bench-<case>.png``: each metric's median per peer, with the
lowest and highest round as whiskers and the ratio to the baseline beside each bar), and
``bench-goals.png``, every goal's measured figure over its bound (below 1 is met).
Charts go to ``docs/img`` unless ``--out`` says otherwise. Uses matplotlib's Agg backend,
so it needs no display.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "img"
BASE_COLOR = "#7f7f7f"
GORUN_COLOR = "#1f77b4"
OTHER_COLOR = "#aec7e8"
MET_COLOR = "#2ca02c"
MISSED_COLOR = "#d62728"
SAVE: dict[str, Any] = {"dpi": 110, "metadata": {"Software": None}}


def chart_name(case: str) -> str:
    """The file name of *case*'s chart."""
    return f"bench-{case}.png"


GOALS_CHART = "bench-goals.png"


def _color(peer: str, baseline: str) -> str:
    if peer == baseline:
        return BASE_COLOR
    return GORUN_COLOR if "gorun" in peer else OTHER_COLOR


def case_chart(case: dict[str, Any], path: Path) -> None:
    """One horizontal bar chart per metric of *case*, side by side, saved to *path*."""
    metrics = case["metrics"]
    peers = case["peers"][::-1]  # first peer on top
    names = [p["peer"] for p in peers]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 3.2,
                                                      0.42 * len(peers) + 1.4),
                             sharey=True, squeeze=False)
    for i, metric in enumerate(metrics):
        ax = axes[0][i]
        figures = [p["metrics"][metric["key"]] for p in peers]
        medians = [f["median"] for f in figures]
        low = [m - min(f["values"]) for m, f in zip(medians, figures, strict=True)]
        high = [max(f["values"]) - m for m, f in zip(medians, figures, strict=True)]
        ax.barh(names, medians, xerr=[low, high], capsize=3,
                color=[_color(n, case["baseline"]) for n in names], error_kw={"lw": 0.8})
        positive = [m for m in medians if m > 0]
        if positive and max(positive) / min(positive) > 30:
            ax.set_xscale("log")
        if i == 0:
            for y, p in enumerate(peers):
                ax.annotate(f" {p['ratio']:.2f}x", (medians[y] + high[y], y),
                            va="center", fontsize=8)
        for goal in case["targets"]:
            if goal["kind"] == "limit" and goal["metric"] == metric["key"]:
                ax.axvline(goal["max_value"], color=MISSED_COLOR if not goal["met"]
                           else MET_COLOR, ls="--", lw=1)
        ax.set_xlabel(f"{metric['label']} ({metric['unit']})")
        ax.margins(x=0.18)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{case['case']}: {case['description']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, **SAVE)
    plt.close(fig)


def _goal_label(case: str, goal: dict[str, Any]) -> str:
    if goal["kind"] == "ratio":
        return f"{case}: {goal['peer']} vs {goal['against']}"
    return f"{case}: {goal['peer']} {goal['metric']}"


def goals_chart(result: dict[str, Any], path: Path) -> None:
    """Every goal's figure divided by its bound, one bar each; below 1 is met."""
    rows = []
    for case in result["cases"]:
        for goal in case["targets"]:
            if goal["kind"] == "ratio":
                score = goal["ratio"] / goal["max_ratio"]
            else:
                score = goal["value"] / goal["max_value"]
            rows.append((_goal_label(case["case"], goal), score, goal["met"]))
    if not rows:
        return
    rows.reverse()
    fig, ax = plt.subplots(figsize=(12, 0.3 * len(rows) + 1.2))
    ax.barh([r[0] for r in rows], [r[1] for r in rows],
            color=[MET_COLOR if r[2] else MISSED_COLOR for r in rows])
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    scores = [r[1] for r in rows]
    ticks = [t for t in (0.03, 0.1, 0.25, 0.5, 1, 2, 4, 10, 30)
             if min(scores) / 2 <= t <= max(scores) * 2]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("measured / bound (log scale; left of the line is met)")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.5, right=0.98, bottom=0.8 / (0.3 * len(rows) + 1.2), top=0.98)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def draw(result: dict[str, Any], out: Path) -> list[Path]:
    """Draw every chart of *result* into *out*; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for case in result["cases"]:
        path = out / chart_name(case["case"])
        case_chart(case, path)
        written.append(path)
    goals = out / GOALS_CHART
    goals_chart(result, goals)
    if goals.exists():
        written.append(goals)
    return written


def main(argv: list[str] | None = None) -> None:
    """Read the JSON result and draw its charts."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a JSON file written by python -m benchmarks --json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        result = json.load(f)
    for path in draw(result, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
