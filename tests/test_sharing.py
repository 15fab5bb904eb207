"""Sharing the run permit (gorun._sharing): with the GIL, workers whose code leaves the GIL
free run at once.

The decisions are driven on stand-in workers with made-up times, so that each verdict is
ordered by the test, not by timing; the permit's shared state from plain threads; then
a runtime whose goroutines hash (which releases the GIL), on a GIL build.
"""

from __future__ import annotations

import hashlib
import threading
import time
import types
from collections import deque
from typing import Any

import pytest

import gorun
from gorun import _sharing, _sysmon
from gorun._current import current_runtime
from gorun._permit import Permit, Turn
from gorun._sharing import (
    CONFIRM,
    FREE_WAIT,
    PROBE_FIRST,
    PROBE_MAX,
    PROBE_MIN,
    WEIGH_EVERY,
    Sharing,
)
from gorun._sysmon import Sysmon
from gorun._wakeup import GIL_ENABLED
from tests.support import TIMEOUT

QUICK = FREE_WAIT / 10  # how late the monitor had the GIL when its thread ran C code
SLOW = 5e-3  # when the worker's thread ran Python code: the switch interval


class _Runtime(Sharing):
    """Two stand-in workers: worker 0 runs with goroutines queued, worker 1 is parked."""

    def __init__(self, *, permit: bool = True) -> None:
        workers: list[Any] = [
            types.SimpleNamespace(index=i, parked=i > 0, notified=False, runq=deque(),
                                  last_select=0.0, cpu_clock=None)
            for i in range(2)
        ]
        workers[0].runq.extend(range(4))
        self.workers = workers
        self.permit = Permit() if permit else None
        self.wakes = 0
        self.init_sharing()

    def wake_idle(self) -> None:
        self.wakes += 1

    def look(self, at: float, late: float, *, stuck: bool = False) -> float | None:
        """A look whose alarm went off at *at*, with the GIL *late* seconds after."""
        return self.gil_probe(at, at + late, stuck)


def test_looks_that_got_the_gil_at_once_share_the_permit_and_wake_a_thief() -> None:
    rt = _Runtime()
    assert rt.permit is not None
    for i in range(CONFIRM):
        assert not rt.permit.shared
        assert rt.look(1.0 + i, QUICK) == PROBE_MIN  # the next look soon, to confirm
    assert rt.permit.shared
    assert rt.wakes == 1  # a thief, to take half the queue


def test_looks_that_waited_for_the_gil_come_further_and_further_apart() -> None:
    rt = _Runtime()
    gaps = [rt.look(1.0 + i, SLOW) for i in range(12)]
    assert gaps[:4] == [PROBE_FIRST, 2 * PROBE_FIRST, 4 * PROBE_FIRST, 8 * PROBE_FIRST]
    assert gaps[-1] == PROBE_MAX
    assert rt.permit is not None
    assert not rt.permit.shared
    assert rt.wakes == 0


def test_only_looks_in_a_row_share_the_permit() -> None:
    rt = _Runtime()
    assert rt.permit is not None
    for i in range(3 * CONFIRM):
        rt.look(1.0 + i, QUICK if i % 2 else SLOW)  # never two quick looks in a row
    assert not rt.permit.shared
    assert rt.probe_gap == PROBE_FIRST  # (a quick look ends the back-off)


def test_a_select_after_the_alarm_went_off_makes_a_quick_look_count_for_nothing() -> None:
    # The worker's select may have let the GIL go (it polls its sockets): the GIL was
    # not free because of the code it runs.
    rt = _Runtime()
    for i in range(2 * CONFIRM):
        rt.workers[0].last_select = 1.0 + i + QUICK / 2
        rt.look(1.0 + i, QUICK)
    assert rt.permit is not None
    assert not rt.permit.shared
    assert rt.probe_gap > PROBE_FIRST


def test_a_look_whose_alarm_was_moved_on_counts_for_nothing() -> None:
    # The worker's select moved the alarm (and due) on just as it went off: the look
    # seems to have had the GIL before its time.
    rt = _Runtime()
    for i in range(2 * CONFIRM):
        rt.look(1.0 + i, -QUICK)
    assert rt.permit is not None
    assert not rt.permit.shared


def test_a_stuck_worker_or_two_running_decide_nothing() -> None:
    rt = _Runtime()
    assert rt.permit is not None
    rt.look(1.0, QUICK)  # one vote
    # Stuck (blocked in a call, which frees the GIL too): a thief was woken already.
    assert rt.look(2.0, QUICK, stuck=True) == PROBE_FIRST  # (the gap, unchanged)
    rt.look(3.0, QUICK)
    assert not rt.permit.shared  # the vote before the stuck look did not count
    rt.workers[1].parked = False  # two running: no look can tell whose code it was
    for i in range(2 * CONFIRM):
        assert rt.look(4.0 + i, QUICK) == PROBE_FIRST
    assert not rt.permit.shared


def test_without_a_permit_there_is_nothing_to_probe() -> None:
    rt = _Runtime(permit=False)
    assert rt.look(1.0, QUICK) is None


class _Clocks:
    """Made-up CPU times of the workers' threads (for _sharing.cpu_time)."""

    def __init__(self) -> None:
        self.times = [0.0, 0.0]

    def __call__(self, w: Any) -> float:
        return float(self.times[w.index])

    def run(self, seconds: float, *, cpus: float) -> None:
        for i in range(2):
            self.times[i] += seconds * cpus / 2


def _shared(monkeypatch: pytest.MonkeyPatch) -> tuple[_Runtime, _Clocks, Permit, float]:
    # Shared by looks at 1, 2... s; returns when the last one was.
    clocks = _Clocks()
    monkeypatch.setattr(_sharing, "cpu_time", clocks)
    rt = _Runtime()
    for i in range(1, CONFIRM + 1):
        rt.look(float(i), QUICK)
    assert rt.permit is not None
    assert rt.permit.shared
    rt.workers[1].parked = False  # the thief took goroutines and runs them
    return rt, clocks, rt.permit, CONFIRM + QUICK


def test_shared_while_two_workers_use_two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    rt, clocks, permit, now = _shared(monkeypatch)
    for _ in range(5 * CONFIRM):
        clocks.run(WEIGH_EVERY * 1.2, cpus=1.9)  # hashing on both
        now += WEIGH_EVERY * 1.2
        rt.look(now, 0.0)
    assert permit.shared


def test_turns_again_once_two_workers_share_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    rt, clocks, permit, now = _shared(monkeypatch)
    step = WEIGH_EVERY * 0.6  # a look too soon to weigh, then one after WEIGH_EVERY
    for _ in range(CONFIRM):
        for _ in range(2):
            assert permit.shared
            clocks.run(step, cpus=1.0)  # Python code on both: one GIL between them
            now += step
            rt.look(now, 0.0)  # (while shared, a look weighs: its lateness tells nothing)
    assert not permit.shared
    assert rt.probe_gap == 2 * PROBE_FIRST  # sharing did not pay: the next probe later


def test_one_worker_running_alone_keeps_it_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    rt, clocks, permit, now = _shared(monkeypatch)
    rt.workers[1].parked = True  # the thief finished what it took
    for _ in range(3 * CONFIRM):
        clocks.run(WEIGH_EVERY * 1.2, cpus=1.0)
        now += WEIGH_EVERY * 1.2
        rt.look(now, 0.0)
    assert permit.shared
    rt.end_sharing()  # the monitor goes idle: nothing queued for a while
    assert not permit.shared


def _holder() -> Any:
    return types.SimpleNamespace(turn=Turn(), cpu_clock=None, cpu_sample=None)


def test_sharing_lets_the_waiters_run_on_and_unsharing_takes_turns_again() -> None:
    permit, a, b, c = Permit(), _holder(), _holder(), _holder()
    permit.acquire(a)
    permit.since = float("inf")  # a is never stuck: only share() lets b on
    got = threading.Event()

    def wait() -> None:
        permit.acquire(b)
        got.set()

    t = threading.Thread(target=wait)
    t.start()
    deadline = time.monotonic() + TIMEOUT
    while list(permit.waiters) != [b]:
        assert time.monotonic() < deadline, "b never waited"
        time.sleep(0.0005)
    permit.share()
    assert got.wait(TIMEOUT)
    t.join(TIMEOUT)
    assert permit.holder is None  # nobody holds a shared permit
    assert not permit.waiters
    permit.acquire(c)  # at once
    assert permit.holder is None
    permit.release(a)  # a finds it does not hold it: nothing happens
    permit.unshare()
    permit.acquire(c)
    assert permit.holder is c


class _Watched:
    """What the monitor reads of a runtime, with a permit to share."""

    permit = Permit()
    probe_gap = 0.25

    def find_stuck(self) -> tuple[bool, bool]:
        return True, False

    def send_deferred(self) -> bool:
        return False


def test_a_poke_plans_a_probe_and_extend_lets_it_through() -> None:
    mon = Sysmon(_Watched())  # type: ignore[arg-type]
    armed: list[float] = []
    mon.alarm = types.SimpleNamespace(arm=armed.append)  # type: ignore[assignment]
    mon.thread = threading.current_thread()  # (not started: poke needs a thread)
    before = time.perf_counter()
    mon.poke()
    assert before + 0.25 <= mon.probe_at <= time.perf_counter() + 0.25
    me = types.SimpleNamespace(runq=deque([1]), runnext=None,
                               others=(types.SimpleNamespace(parked=True, notified=False),))
    armed.clear()
    mon.extend(mon.probe_at - 0.1, me)  # before the probe: put off
    assert len(armed) == 1
    due = mon.due
    mon.extend(mon.probe_at, me)  # the probe is due: the look comes as planned
    assert len(armed) == 1
    assert mon.due == due
    assert mon.extend_at == due


def test_without_a_permit_a_poke_plans_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Watched, "permit", None)
    mon = Sysmon(_Watched())  # type: ignore[arg-type]
    mon.alarm = types.SimpleNamespace(arm=lambda _: None)  # type: ignore[assignment]
    mon.thread = threading.current_thread()
    mon.poke()
    assert mon.probe_at == float("inf")
    assert _sysmon.SYSMON_MIN > 0


BUFFER = bytes(range(256)) * 4096  # 1 MiB: hashlib hashes it with the GIL released


@pytest.mark.skipif(not GIL_ENABLED, reason="the run permit is a GIL build's")
def test_goroutines_that_hash_run_on_both_workers() -> None:
    # With the permit taking turns, a worker that computes keeps its queued goroutines.
    # Hashing leaves the GIL free: the monitor finds that out and shares the permit, and
    # the idle worker takes some. Batches are spawned until that happens (on a loaded
    # machine a blocked-looking worker's goroutines may also be taken without sharing).
    async def main() -> tuple[set[int], bool]:
        runtime = current_runtime()
        assert runtime is not None
        permit = runtime.permit
        assert permit is not None

        async def item() -> tuple[int, bool]:
            hashlib.sha256(BUFFER).digest()
            return threading.get_ident(), permit.shared

        threads: set[int] = set()
        shared = False
        deadline = time.monotonic() + TIMEOUT
        while not (shared and len(threads) == 2) and time.monotonic() < deadline:
            handles = [gorun.go(item()) for _ in range(100)]
            for h in handles:
                thread, during = await h
                threads.add(thread)
                shared = shared or during
        return threads, shared

    threads, shared = gorun.run(main(), procs=2)
    assert shared
    assert len(threads) == 2
