"""The benchmark suite's reading of a goal's rounds (benchmarks/_harness.py).

A goal's verdict compares the ratio of two medians with its bound; beside it the suite
gives the goal's figure in each round, and calls the goal unsettled when the bound lies
between the lowest and the highest of them. These check that arithmetic, on figures
made up for the purpose, and on a result in the JSON shape the suite writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks._harness import goal_rounds, round_confidence, round_figures, unsettled


def test_round_figures_pair_the_rounds_of_two_peers() -> None:
    assert round_figures([2.0, 3.0, 4.0], [1.0, 3.0, 8.0]) == [2.0, 1.0, 0.5]
    assert round_figures([2.0, 3.0]) == [2.0, 3.0]  # a bound's figures: the peer's own


def test_round_figures_refuse_rounds_that_do_not_pair() -> None:
    with pytest.raises(ValueError, match="3 rounds against 2"):
        round_figures([1.0, 2.0, 3.0], [1.0, 2.0])


def test_the_range_of_n_rounds_holds_the_median_with_odds_1_minus_2_to_the_1_minus_n() -> None:
    assert round_confidence(1) == 0.0  # one round: its range is a point
    assert round_confidence(2) == 0.5
    assert round_confidence(5) == 1 - 1 / 16
    assert round_confidence(7) == 1 - 1 / 64
    assert round_confidence(0) == 0.0


@pytest.mark.parametrize(
    ("figures", "bound", "expected"),
    [
        ([0.96, 1.01, 1.04], 1.0, True),  # the bound inside: either way
        ([1.001, 1.02, 1.06], 1.0, False),  # every round above: a clear miss
        ([0.73, 0.76, 0.78], 0.8, False),  # every round below: clearly met
        ([1.0, 1.1], 1.0, True),  # a round on the bound (it meets it), one above
        ([0.9, 1.0], 1.0, False),  # every round at or below the bound: clearly met
        ([], 1.0, False),  # no rounds: nothing to say
    ],
)
def test_a_goal_is_unsettled_when_its_bound_lies_within_its_rounds(
    figures: list[float], bound: float, expected: bool
) -> None:
    assert unsettled(figures, bound) is expected


def _case() -> dict[str, Any]:
    def peer(name: str, values: list[float]) -> dict[str, Any]:
        return {"peer": name, "metrics": {"time": {"values": values}}}

    return {"case": "made-up", "peers": [peer("base", [10.0, 20.0, 10.0]),
                                         peer("ours", [11.0, 19.0, 9.0])]}


def test_goal_rounds_come_from_the_peers_values_of_an_older_result() -> None:
    ratio = {"kind": "ratio", "peer": "ours", "against": "base", "metric": "time"}
    assert goal_rounds(_case(), ratio) == pytest.approx([1.1, 0.95, 0.9])
    limit = {"kind": "limit", "peer": "ours", "metric": "time"}
    assert goal_rounds(_case(), limit) == [11.0, 19.0, 9.0]


def test_goal_rounds_stored_by_the_run_are_used_as_they_are() -> None:
    stored = {"kind": "ratio", "peer": "ours", "against": "base", "metric": "time",
              "rounds": [1.0, 2.0, 3.0]}
    assert goal_rounds(_case(), stored) == [1.0, 2.0, 3.0]
