"""Stress: the randomized checks of test_chan and test_select, at scale.

Hundreds of thousands of values through one channel, from producers and consumers on
every worker and on plain threads, with waiting operations cancelled at random (tiny
timeouts, ``Goroutine.cancel()`` from another goroutine): every value sent is received
exactly once, and nothing else is. Then thousands of rounds of selects on different
workers racing for the same values.

These run only when asked for, with ``pytest -m stress`` (or ``GORUN_STRESS=1``). The
seed is ``GORUN_STRESS_SEED`` if set, else random; it is printed either way (``-s``
shows it live). A run that does not finish in time prints its progress and fails.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.test_chan import Exchange, run_exchange
from tests.test_select import race_counterparties, race_two_selects

pytestmark = [pytest.mark.stress, pytest.mark.timeout(900)]

VALUES = 25_000  # per producer: 10 producers, 250,000 values offered per run


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    markexpr = request.config.getoption("markexpr", "") or ""
    if "stress" not in markexpr and not os.environ.get("GORUN_STRESS"):
        pytest.skip("a stress test: run with -m stress (or GORUN_STRESS=1)")


@pytest.fixture
def seed() -> int:
    env = os.environ.get("GORUN_STRESS_SEED")
    value = int(env) if env else random.randrange(2**32)
    print(f"GORUN_STRESS_SEED={value}")
    return value


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
        deadline=600.0,
    )
    run_exchange(cfg)


def test_stress_no_value_lost_or_duplicated_on_many_workers(seed: int) -> None:
    cfg = Exchange(seed=seed, values=VALUES // 2, cap=2, procs=8, deadline=600.0)
    run_exchange(cfg)


@pytest.mark.parametrize("cap", [0, 1])
def test_stress_two_selects_race_for_one_value(cap: int) -> None:
    print(dict(race_two_selects(10_000, cap)))


def test_stress_select_raced_by_both_counterparties() -> None:
    print(dict(race_counterparties(10_000)))
