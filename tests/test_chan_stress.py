"""Stress: the randomized checks of test_chan and test_select, at scale.

Hundreds of thousands of values through one channel, from producers and consumers on
every worker and on plain threads, with waiting operations cancelled at random (tiny
timeouts, ``Goroutine.cancel()`` from another goroutine): every value sent is received
exactly once, and nothing else is. Then thousands of rounds of selects on different
workers racing for the same values.

These and the other stress modules (``test_stress_*.py``) run only when asked for, with
``pytest -m stress`` (or ``GORUN_STRESS=1``): see ``conftest.py``. Their ``seed`` is
``GORUN_STRESS_SEED`` if set, else random; it is printed either way (``-s`` shows it
live) and named in every failure. The harness they share (deadlines, dumps, the
:class:`~tests.support.Crew`) is in ``support.py``.
"""

from __future__ import annotations

import pytest

from tests.support import (
    Exchange,
    bounded,
    race_counterparties,
    race_two_selects,
    run_exchange,
)

pytestmark = [pytest.mark.stress, pytest.mark.timeout(900)]

VALUES = 15_000  # per producer: 10 producers, 150,000 values offered per run


# -- the exchange and select races ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "close_early", "cancel_receivers"),
    [
        (0, False, True),
        (1, False, True),
        (64, False, True),
        (0, True, True),
        (0, False, False),
        (8, True, False),
    ],
)
def test_stress_no_value_lost_or_duplicated(
    seed: int, cap: int, close_early: bool, cancel_receivers: bool
) -> None:
    limit = 120.0
    cfg = Exchange(
        seed=seed,
        values=VALUES,
        cap=cap,
        producers_per_worker=2,
        consumers_per_worker=2,
        thread_producers=2,
        thread_consumers=2,
        close_early=close_early,
        cancel_receivers=cancel_receivers,
        deadline=limit + 5,  # the exchange's own report comes after the dump
    )
    bounded(lambda _: run_exchange(cfg), seed=seed, limit=limit, what="exchange")


def test_stress_no_value_lost_or_duplicated_on_many_workers(seed: int) -> None:
    limit = 120.0
    cfg = Exchange(seed=seed, values=VALUES // 2, cap=2, procs=8, deadline=limit + 5)
    bounded(lambda _: run_exchange(cfg), seed=seed, limit=limit, what="exchange, 8 workers")


@pytest.mark.parametrize("cap", [0, 1])
def test_stress_two_selects_race_for_one_value(seed: int, cap: int) -> None:
    bounded(lambda _: race_two_selects(6_000, cap), seed=seed, limit=120.0, what="two selects")


def test_stress_select_raced_by_both_counterparties(seed: int) -> None:
    bounded(lambda _: race_counterparties(6_000), seed=seed, limit=120.0, what="select raced")
