"""The monitor thread (gorun._sysmon) and the alarm it sleeps on (gorun._alarm).

The alarm and the monitor are driven from plain threads, with a stand-in runtime whose
looks are counted and signalled by events: a period of an hour stands for "not before
the test ends", a millisecond for "soon". Then the runtime: goroutines queued behind a
loop that blocks after a busy stretch, in which its selects put the monitor's looks off,
are still taken by the other workers.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
import types
from collections import deque
from typing import Any

import pytest

import gorun
from gorun import _alarm, _sysmon
from gorun._alarm import Alarm
from gorun._current import current_runtime
from gorun._sysmon import Sysmon
from tests.support import TIMEOUT

HOUR = 3600.0


def _holding_alarm() -> Alarm | None:
    return _alarm._ctypes_alarm(hold_gil=True)


def _alarms() -> list[Any]:
    # Every way this interpreter has to make one (os from 3.13, ctypes, and ctypes with
    # calls that keep the GIL).
    makers = [("os", _alarm._os_alarm), ("ctypes", _alarm._ctypes_alarm),
              ("ctypes-gil", _holding_alarm)]
    found = [pytest.param(make, id=name) for name, make in makers if make() is not None]
    assert found, "no timerfd here: gorun supports Linux"
    return found


@pytest.fixture(params=_alarms())
def alarm(request: pytest.FixtureRequest) -> Alarm:
    made: Alarm = request.param()
    return made


def _readable(alarm: Alarm, timeout: float) -> bool:
    return bool(select.select([alarm], [], [], timeout)[0])


def test_an_alarm_goes_off_once_per_arming(alarm: Alarm) -> None:
    assert not alarm.take()  # never armed
    alarm.arm(1e-3)
    alarm.wait()
    assert not alarm.take()  # wait took it
    alarm.arm(0)  # "now" (0 would disarm a timerfd: arm makes it a nanosecond)
    assert _readable(alarm, TIMEOUT)
    assert alarm.take()
    assert not alarm.take()


def test_arming_again_replaces_the_time_even_after_it_went_off(alarm: Alarm) -> None:
    alarm.arm(1e-3)
    assert _readable(alarm, TIMEOUT)
    alarm.arm(HOUR)  # before anyone took it: the expiry is replaced, not kept
    assert not alarm.take()
    assert not _readable(alarm, 0)
    alarm.arm(0)
    alarm.wait()


def test_a_sleeper_wakes_at_a_time_another_thread_moved(alarm: Alarm) -> None:
    alarm.arm(HOUR)
    waited = threading.Event()

    def sleeper() -> None:
        alarm.wait()
        waited.set()

    t = threading.Thread(target=sleeper)
    t.start()
    try:
        assert not waited.wait(0.01)
        alarm.arm(1e-3)  # moved earlier from this thread
        assert waited.wait(TIMEOUT)
    finally:
        alarm.arm(0)
        t.join(TIMEOUT)
    assert not t.is_alive()


@pytest.mark.usefixtures("high_fds")
def test_an_alarm_numbered_past_select_range_is_waited_on() -> None:
    # Made in a process with 1024 descriptors open: select.select cannot wait on it.
    for make in (_alarm._os_alarm, _alarm._ctypes_alarm, _holding_alarm):
        made = make()
        if made is None:
            continue
        assert made.fileno() >= 1024
        made.arm(1e-3)
        made.wait()


def test_new_alarm_uses_what_the_interpreter_has() -> None:
    made = _alarm.new_alarm()
    assert isinstance(made, Alarm)
    assert made.fileno() >= 0


# -- the monitor, on a stand-in runtime ---------------------------------------------------


class _Runtime:
    """Counts the monitor's looks; reports goroutines queued (none stuck) meanwhile."""

    def __init__(self) -> None:
        self.looks = 0
        self.looked = threading.Event()
        self.queued = True
        self.monitor: Sysmon | None = None
        self.idle_looks = 0  # made while the monitor counted itself idle

    def find_stuck(self) -> tuple[bool, bool]:
        self.looks += 1
        if self.monitor is not None and self.monitor.idle:
            self.idle_looks += 1
        self.looked.set()
        return self.queued, False

    def send_deferred(self) -> bool:
        return False

    # What the monitor asks about sharing the permit (_sharing): there is none here.
    permit = None
    probe_gap = 5e-3

    def gil_probe(self, due: float, resumed: float, stuck: bool) -> float | None:
        return None

    def end_sharing(self) -> None:
        pass


def _monitor(rt: _Runtime) -> Sysmon:
    rt.monitor = Sysmon(rt)  # type: ignore[arg-type]
    return rt.monitor


def _worker(queued: int = 1, others: tuple[Any, ...] = ()) -> Any:
    return types.SimpleNamespace(runq=deque(range(queued)), runnext=None, others=others)


def _other(parked: bool = True, notified: bool = False) -> Any:
    return types.SimpleNamespace(parked=parked, notified=notified)


@pytest.fixture
def periods(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_periods(low: float, high: float) -> None:
        monkeypatch.setattr(_sysmon, "SYSMON_MIN", low)
        monkeypatch.setattr(_sysmon, "SYSMON_MAX", high)

    return set_periods


def test_a_poked_monitor_first_looks_a_period_later(periods: Any) -> None:
    # Poked, it does not look at once (what was just queued has not waited past its
    # grace): it sleeps a period, here an hour, on an alarm that stop sets off.
    periods(HOUR, HOUR)
    rt = _Runtime()
    mon = _monitor(rt)
    assert mon.alarm is None  # made by start: a runtime of one worker has no monitor
    mon.start()
    assert mon.alarm is not None
    try:
        mon.poke()
        assert not mon.idle
        assert mon.due > time.perf_counter() + HOUR / 2
        assert not rt.looked.wait(0.02)
    finally:
        mon.stop()
    assert mon.thread is not None
    assert not mon.thread.is_alive()
    assert rt.looks == 0


@pytest.mark.parametrize("on_alarm", [True, False], ids=["alarm", "condition"])
def test_a_poked_monitor_looks_and_goes_idle_when_nothing_is_queued(
    on_alarm: bool, periods: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    periods(1e-3, 2e-3)
    rt = _Runtime()
    mon = _monitor(rt)
    if not on_alarm:  # a platform without timerfd: it sleeps on its condition
        monkeypatch.setattr(_sysmon, "new_alarm", lambda: None)
    mon.start()
    assert (mon.alarm is not None) == on_alarm
    try:
        mon.poke()
        assert rt.looked.wait(TIMEOUT)
        rt.queued = False
        deadline = time.monotonic() + TIMEOUT
        while not mon.idle:  # SYSMON_IDLE_AFTER (50 ms) of looks that found nothing
            assert time.monotonic() < deadline, "the monitor never went idle"
            time.sleep(0.001)
        # Going idle, it looks once more (a goroutine queued meanwhile did not poke);
        # then no more.
        while rt.idle_looks == 0:
            assert time.monotonic() < deadline, "no look after going idle"
            time.sleep(0.001)
        rt.looked = threading.Event()
        assert not rt.looked.wait(0.05), "an idle monitor looked"
        assert rt.idle_looks == 1
        rt.queued = True
        mon.poke()  # idle: woken again
        assert rt.looked.wait(TIMEOUT)
    finally:
        mon.stop()
    assert mon.thread is not None
    assert not mon.thread.is_alive()


def test_extend_does_the_look_the_monitor_would_do(periods: Any) -> None:
    # Not started: extend's effect on the alarm and the fields, alone.
    periods(1e-3, 8e-3)
    mon = _monitor(_Runtime())
    armed: list[float] = []
    mon.alarm = types.SimpleNamespace(arm=armed.append)  # type: ignore[assignment]
    mon.idle = False
    mon.delay, mon.due, mon.extend_at = 1e-3, 100.001, 100.0005
    me = _worker(queued=3, others=(_other(), _other()))
    mon.extend(100.0006, me)
    assert armed == [2e-3]  # doubled, as a look that found none stuck doubles it
    assert mon.delay == 2e-3
    assert mon.due == pytest.approx(100.0026)
    assert mon.extend_at == pytest.approx(100.0016)
    for _ in range(5):
        mon.extend(100.1, me)
    assert mon.delay == 8e-3  # up to SYSMON_MAX (patched)
    assert armed[-1] == 8e-3


@pytest.mark.parametrize(
    ("me", "why"),
    [
        (_worker(queued=0, others=(_other(),)), "nothing queued: it counts quiet time"),
        (_worker(others=(_other(parked=False),)), "another worker runs"),
        (_worker(others=(_other(notified=True),)), "another worker was woken"),
    ],
)
def test_extend_leaves_the_look_as_planned(me: Any, why: str) -> None:
    mon = _monitor(_Runtime())
    armed: list[float] = []
    mon.alarm = types.SimpleNamespace(arm=armed.append)  # type: ignore[assignment]
    mon.idle = False
    mon.delay, mon.due, mon.extend_at = 1e-3, 100.001, 100.0005
    mon.extend(100.0006, me)
    assert armed == [], why
    assert (mon.delay, mon.due) == (1e-3, 100.001), why
    assert mon.extend_at == 100.001, why  # no second try before the look


@pytest.mark.parametrize("state", ["idle", "stopping", "no alarm"])
def test_extend_does_nothing_without_a_sleeping_monitor(state: str) -> None:
    mon = _monitor(_Runtime())
    armed: list[float] = []
    fake = types.SimpleNamespace(arm=armed.append)
    mon.alarm = None if state == "no alarm" else fake  # type: ignore[assignment]
    mon.idle = state == "idle"
    if state == "stopping":
        mon.stop()  # never started
        armed.clear()
    mon.delay, mon.due, mon.extend_at = 1e-3, 100.001, 100.0005
    mon.extend(100.0006, _worker(others=(_other(),)))
    assert armed == []
    assert mon.extend_at == float("inf")


def test_a_busy_holder_puts_the_looks_off_until_it_stops_selecting(periods: Any) -> None:
    # The monitor thread, poked, with this thread as the busy holder: each extend moves
    # the alarm on (periods of 0.1, 0.2, then 0.4 s), so no look happens while they
    # come, every 5 ms for 0.2 s, though the first look was due 0.05 s after the poke.
    periods(0.05, 0.4)
    rt = _Runtime()
    mon = _monitor(rt)
    mon.start()
    me = _worker(others=(_other(),))
    try:
        mon.poke()
        for _ in range(40):
            mon.extend(time.perf_counter(), me)
            assert not rt.looked.wait(0.005)
        assert rt.looks == 0
        assert rt.looked.wait(TIMEOUT)  # no more extends: it looks
    finally:
        mon.stop()
    assert mon.thread is not None
    assert not mon.thread.is_alive()


# -- the runtime ---------------------------------------------------------------------------


def _busy(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


@pytest.mark.parametrize(
    ("permit", "loop"),
    [("1", "asyncio"), ("0", "asyncio"), ("1", "uvloop")],
    ids=["permit", "no-permit", "uvloop"],
)
def test_a_goroutine_behind_a_loop_that_blocks_after_a_busy_stretch_is_taken(
    permit: str, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # main spawns a goroutine and yields, over and over for 0.1 s: its loop selects with
    # a goroutine queued and the other workers parked, so (with the permit) its selects
    # put the monitor's looks off. Then it spawns one more and blocks its loop until
    # that one has run: only a worker that steals it can, and only the monitor can
    # send one (a thief woken by the spawn found the loop running, and parked). On
    # uvloop workers too, which count themselves parked between ticks.
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("GORUN_GIL_PERMIT", permit)
    extends = 0
    extend = Sysmon.extend

    def counted(self: Sysmon, now: float, me: Any) -> None:
        nonlocal extends
        extends += 1
        extend(self, now, me)

    monkeypatch.setattr(Sysmon, "extend", counted)
    ran = threading.Event()

    async def item() -> int:
        return _busy(200)

    async def after() -> None:
        ran.set()

    async def main() -> tuple[bool, bool]:
        runtime = current_runtime()
        assert runtime is not None
        end = time.monotonic() + 0.1
        gs = []
        while time.monotonic() < end:
            gs.append(gorun.go(item()))
            await asyncio.sleep(0)
        a = gorun.go(after())
        taken = ran.wait(TIMEOUT)  # blocks this loop, with a queued behind it
        await a
        for g in gs:
            await g
        return taken, runtime.permit is not None

    taken, with_permit = gorun.run(main(), procs=3, loop=loop)
    assert taken, "the goroutine behind the blocked loop was never taken"
    if with_permit and loop == "asyncio":  # (uvloop workers take no part in it)
        assert extends > 0  # the case this is about: looks were put off before


def test_the_monitor_stops_while_a_worker_extends(periods: Any) -> None:
    # stop() sets the alarm off; an extend racing with it sets it off again.
    periods(HOUR, HOUR)
    mon = _monitor(_Runtime())
    mon.start()
    me = _worker(others=(_other(),))
    extending = threading.Event()
    done = threading.Event()

    def extender() -> None:
        while not done.is_set():
            mon.extend(time.perf_counter(), me)
            extending.set()

    t = threading.Thread(target=extender)
    try:
        mon.poke()
        t.start()
        assert extending.wait(TIMEOUT)
        mon.stop()
    finally:
        done.set()
        t.join(TIMEOUT)
    assert mon.thread is not None
    assert not mon.thread.is_alive()
