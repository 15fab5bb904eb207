"""``python -m benchmarks.count``: instructions per operation, from two callgrind runs.

The arithmetic and the parsing are checked here, on made-up counts; CI's benchmark step
counts two peers for real.
"""

from __future__ import annotations

import pytest

from benchmarks.count import parse_collected, per_op


def test_the_count_is_read_from_callgrinds_summary() -> None:
    stderr = ("==12== Callgrind, a call-graph generating cache profiler\n"
              "==12== Collected : 598083727\n")
    assert parse_collected(stderr) == 598_083_727


def test_a_run_without_a_summary_is_an_error_that_shows_the_output() -> None:
    with pytest.raises(RuntimeError, match=r"(?s)no instruction count.*Traceback"):
        parse_collected("Traceback (most recent call last):\n  ...\nKeyError: 'spawn'\n")


def test_one_operation_costs_the_difference_over_the_difference_in_operations() -> None:
    counts = {100: 5_000_000, 300: 5_900_000}  # 4.55 million of start-up, 4,500 an op
    runs: list[tuple[str, str, int, int]] = []

    def fake(case: str, peer: str, ops: int, warm: int) -> int:
        runs.append((case, peer, ops, warm))
        return counts[ops]

    assert per_op("spawn", "gorun go + await, procs=1", 100, 300, fake) == 4_500
    # Both children warm up alike (the lower count), so the warm-up cancels out.
    assert sorted(runs) == [("spawn", "gorun go + await, procs=1", 100, 100),
                            ("spawn", "gorun go + await, procs=1", 300, 100)]


@pytest.mark.parametrize(("low", "high"), [(0, 10), (10, 10), (30, 10)])
def test_the_operation_counts_must_grow(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="0 < low < high"):
        per_op("spawn", "peer", low, high, lambda *_: 0)
