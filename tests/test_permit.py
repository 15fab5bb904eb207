"""The run permit (gorun._permit): with the GIL, busy workers take turns by loop iteration.

The permit itself is driven from plain threads with stand-in holders, so that every
hand-over is ordered by events, not by timing; then the runtime's use of it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types
from typing import Any

import pytest

import gorun
from gorun import _permit
from gorun._permit import Permit
from tests.support import TIMEOUT


def _holder() -> Any:
    return types.SimpleNamespace(turn=_permit.Turn(), cpu_clock=None, cpu_sample=None)


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i % 7
    return x


def _wait_for(cond: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.0005)


def test_a_free_permit_is_taken_at_once_and_released_to_nobody() -> None:
    permit, a = Permit(), _holder()
    permit.acquire(a)
    assert permit.holder == a  # (==: "is" would narrow a for mypy)
    permit.release(a)
    assert permit.holder is None
    permit.release(a)  # not held: nothing happens
    assert permit.holder is None


def test_the_permit_goes_to_waiters_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nobody is ever found stuck: no slice passes, and no holder's thread looks blocked
    # (this thread sleeps while b and c wait, and b may be slow to run once handed the
    # permit). Only hand-overs move the permit, however the threads are scheduled.
    monkeypatch.setattr(_permit, "SLICE", 3600.0)
    monkeypatch.setattr(_permit, "cpu_time", lambda _: None)
    permit, a, b, c = Permit(), _holder(), _holder(), _holder()
    permit.acquire(a)
    order: list[str] = []

    def wait(h: Any, name: str) -> None:
        permit.acquire(h)
        order.append(name)
        permit.release(h)

    tb = threading.Thread(target=wait, args=(b, "b"))
    tb.start()
    _wait_for(lambda: list(permit.waiters) == [b])
    tc = threading.Thread(target=wait, args=(c, "c"))
    tc.start()
    _wait_for(lambda: list(permit.waiters) == [b, c])
    permit.release(a)  # to b, then b to c
    tb.join(TIMEOUT)
    tc.join(TIMEOUT)
    assert order == ["b", "c"]
    assert permit.holder is None
    assert not permit.waiters


def test_pass_turn_queues_the_holder_behind_the_waiter() -> None:
    permit, a, b = Permit(), _holder(), _holder()
    permit.acquire(a)
    permit.since = float("inf")
    got = threading.Event()

    def wait() -> None:
        permit.acquire(b)
        got.set()
        _wait_for(lambda: list(permit.waiters) == [a])  # a waits behind b
        permit.release(b)

    t = threading.Thread(target=wait)
    t.start()
    _wait_for(lambda: list(permit.waiters) == [b])
    permit.pass_turn(a)  # returns once b has had its turn and handed it back
    assert got.is_set()
    assert permit.holder == a  # (==: "is" would narrow a for mypy)
    t.join(TIMEOUT)


def test_a_wait_that_fails_leaves_the_line_and_gives_back_a_grant() -> None:
    # An error while waiting (an interrupt, a tool that forbids the wait) must not leave
    # the worker in line, or holding a permit it never took: the line would stall.
    permit, a, b, c = Permit(), _holder(), _holder(), _holder()
    permit.acquire(a)
    permit.since = float("inf")

    class Boom(Exception):
        pass

    class FailingTurn(_permit.Turn):
        def take(self, timeout: float) -> bool:
            raise Boom

    class GrantedThenFailing(_permit.Turn):
        def take(self, timeout: float) -> bool:
            permit.release(a)  # the permit is handed to c as its wait fails
            raise Boom

    b.turn = FailingTurn()
    with pytest.raises(Boom):
        permit.acquire(b)  # fails while in line
    assert not permit.waiters
    assert permit.holder == a

    c.turn = GrantedThenFailing()
    with pytest.raises(Boom):
        permit.acquire(c)
    assert not permit.waiters
    assert permit.holder is None  # c gave it back
    b.turn = _permit.Turn()
    permit.acquire(b)  # the line works on
    assert permit.holder is b


def test_a_holder_blocked_in_a_call_loses_the_permit_within_a_probe() -> None:
    # The holder's thread sleeps (uses no CPU) while it holds the permit: a waiter takes
    # the permit after a look or two, long before SLICE would pass without a select.
    permit, a, b = Permit(), _holder(), _holder()
    holding, done = threading.Event(), threading.Event()

    def blocked_holder() -> None:
        permit.acquire(a)  # sets a's CPU clock
        holding.set()
        done.wait(TIMEOUT)  # blocks, as a loop in time.sleep() would

    t = threading.Thread(target=blocked_holder)
    t.start()
    assert holding.wait(TIMEOUT)
    permit.since = float("inf")  # never stuck by SLICE: only the probe can tell
    start = time.perf_counter()
    permit.acquire(b)
    assert permit.holder is b
    assert time.perf_counter() - start < TIMEOUT
    done.set()
    t.join(TIMEOUT)
    permit.release(a)  # a finds it lost the permit: nothing happens
    assert permit.holder is b


def test_a_holder_that_computes_keeps_the_permit_until_slice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The holder's thread counts as running all along, as a computing one does when the
    # scheduler lets it (test_computing_tells_a_running_thread_from_a_blocked_one reads
    # the real clock): no probe finds it blocked, so the permit moves only when SLICE
    # has passed without a select, however late this thread or the holder's runs.
    slice_ = 0.05
    monkeypatch.setattr(_permit, "SLICE", slice_)
    monkeypatch.setattr(_permit, "cpu_time", lambda _: time.perf_counter())
    permit, a, b = Permit(), _holder(), _holder()
    holding, done = threading.Event(), threading.Event()
    spins = [0]

    def computing_holder() -> None:
        permit.acquire(a)
        holding.set()
        while not done.is_set():  # pure Python: uses CPU all along, never selects
            spins[0] += 1

    t = threading.Thread(target=computing_holder)
    t.start()
    assert holding.wait(TIMEOUT)
    granted = permit.since = time.perf_counter()  # as a select of the holder's would
    permit.acquire(b)  # taken when SLICE passed without a select
    taken = time.perf_counter()
    done.set()
    t.join(TIMEOUT)
    assert permit.holder is b
    assert spins[0] > 0
    assert taken - granted > slice_  # not at a probe (every PROBE) before
    assert slice_ > _permit.PROBE  # (so that a probe came first)


def test_computing_tells_a_running_thread_from_a_blocked_one() -> None:
    running = _holder()
    running.cpu_clock = _permit._thread_clock()
    assert _permit.computing(running, time.perf_counter())  # first look: running
    total = 0
    for i in range(200_000):  # this thread computes
        total += i
    assert _permit.computing(running, time.perf_counter())

    blocked = _holder()
    ready, done = threading.Event(), threading.Event()

    def sleeper() -> None:
        blocked.cpu_clock = _permit._thread_clock()
        ready.set()
        done.wait(TIMEOUT)

    t = threading.Thread(target=sleeper)
    t.start()
    assert ready.wait(TIMEOUT)
    _permit.computing(blocked, time.perf_counter())
    time.sleep(0.01)
    assert not _permit.computing(blocked, time.perf_counter())
    done.set()
    t.join(TIMEOUT)


def test_the_runtime_has_a_permit_only_with_the_gil_and_several_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gorun._current import current_runtime

    async def permit() -> Permit | None:
        runtime = current_runtime()
        assert runtime is not None
        return runtime.permit

    gil = gorun._wakeup.GIL_ENABLED
    assert (gorun.run(permit(), procs=2) is not None) == gil
    assert gorun.run(permit(), procs=1) is None
    monkeypatch.setenv("GORUN_GIL_PERMIT", "0")
    assert gorun.run(permit(), procs=2) is None
    monkeypatch.setenv("GORUN_GIL_PERMIT", "yes")
    coro = permit()
    with pytest.raises(ValueError, match="GORUN_GIL_PERMIT must be 0 or 1"):
        gorun.run(coro, procs=2)
    coro.close()


def test_a_worker_blocked_in_a_slow_call_does_not_hold_up_the_others() -> None:
    # Worker 1 blocks its loop in time.sleep() while it holds the permit (or not: either
    # way); goroutines on the other workers go on making progress meanwhile.
    async def blocker(started: threading.Event, release: threading.Event) -> None:
        started.set()
        release.wait(TIMEOUT)  # blocks this loop: a slow synchronous call

    async def main() -> int:
        from gorun._current import current_runtime
        from gorun._go import start_on

        runtime = current_runtime()
        assert runtime is not None
        started, release = threading.Event(), threading.Event()
        g = start_on(blocker(started, release), runtime.workers[1], name="blocker")
        await asyncio.to_thread(started.wait, TIMEOUT)
        rounds = 0
        ch: gorun.Chan[int] = gorun.Chan()

        async def echo() -> None:
            async for v in ch:
                await ch.send(v)

        e = gorun.go(echo(), local=True)
        for i in range(200):  # 200 hand-offs while worker 1 is blocked
            await ch.send(i)
            assert await ch.recv() == i
            rounds += 1
        release.set()
        ch.close()
        await g
        await e
        return rounds

    assert gorun.run(main(), procs=2) == 200


@pytest.mark.usefixtures("high_fds")
def test_a_turn_numbered_past_select_range_is_waited_on() -> None:
    # A turn made in a process with 1024 descriptors open (a server with many
    # connections): select.select cannot wait on it, poll can.
    turn = _permit.Turn()
    assert not turn.take(0.001)
    turn.give()
    assert turn.take(TIMEOUT)
    assert not turn.take_now()


@pytest.mark.usefixtures("high_fds")
def test_two_busy_workers_take_turns_with_descriptors_past_select_range() -> None:
    # The runtime, its turns and the monitor's alarm made past 1024: two workers that
    # hand values back and forth while each computes, waiting for the permit in turn.
    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan()

        async def echo() -> None:
            async for v in ch:
                _spin(2_000)
                await ch.send(v)

        e = gorun.go(echo())
        total = 0
        for i in range(50):
            _spin(2_000)
            await ch.send(i)
            total += await ch.recv()
        ch.close()
        await e
        return total

    assert gorun.run(main(), procs=2) == sum(range(50))
