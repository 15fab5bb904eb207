"""The monitor thread (``gorun-sysmon``), which rescues goroutines queued behind a stuck loop.

It only looks and wakes: the runtime decides what is stuck (``Runtime.find_stuck``) and
sends wake-ups held back too long (``Runtime.send_deferred``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence, Sized
from typing import TYPE_CHECKING, Protocol

from ._alarm import Alarm, new_alarm

if TYPE_CHECKING:
    from ._runtime import Runtime

#: The monitor's polling period while goroutines are queued, and its back-off limit.
SYSMON_MIN = 1e-3
SYSMON_MAX = 10e-3
#: With nothing queued for this long, the monitor sleeps until a goroutine is queued.
SYSMON_IDLE_AFTER = 50e-3


class Other(Protocol):
    """What `Sysmon.extend` reads of the other workers."""

    @property
    def parked(self) -> bool: ...
    @property
    def notified(self) -> bool: ...


class Caller(Protocol):
    """What `Sysmon.extend` reads of the worker that calls it."""

    @property
    def runq(self) -> Sized: ...
    @property
    def runnext(self) -> object: ...
    @property
    def others(self) -> Sequence[Other]: ...


class Sysmon:
    """A monitor thread that rescues goroutines queued behind a busy or blocked loop.

    A goroutine waits in its spawner's queue until that loop yields. If the loop instead
    runs a long callback, or blocks in one (``time.sleep``, a blocking client), no idle
    worker hears of it: idle workers park and steal only when woken. Like Go's
    ``sysmon``, this thread looks at the queues every millisecond or so while anything
    is queued, and wakes an idle worker when a goroutine has waited past its grace.
    With nothing queued it backs off, then sleeps until the next goroutine is queued,
    so an idle program costs nothing.

    It sleeps on an `Alarm` where there is one, which the only running worker moves on
    while it selects (`extend`): with the GIL a look takes the GIL from that worker in
    the middle of a callback, and what the look would find, the worker's select has
    just shown. Not every look: now and then (``probe_at``) one comes as planned, to
    see how soon it gets the GIL, which tells whether the workers should share the run
    permit (``_sharing``).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cond = threading.Condition(threading.Lock())
        self.idle = True  # sleeping until poked; guarded by cond, read as a hint
        # When its current sleep ends and it wants the GIL back (inf: not before it is
        # poked). A busy worker that sees this time pass lets it have the GIL
        # (Wakeups.yield_to_sysmon); written without a lock, read as a hint.
        self.due = float("inf")
        # The period of its looks while goroutines are queued (SYSMON_MIN, doubled by
        # each look, or extend, that found none stuck, up to SYSMON_MAX).
        self.delay = SYSMON_MIN
        # Its alarm, made by start (None: it sleeps on cond, and nothing moves its looks
        # on), and when a busy worker may move it on (inf: not now: it is idle, or not
        # on its alarm). Idle, the alarm is not armed (poke arms it); awake, it is armed
        # for ``due`` while the monitor sleeps, and no later than the next look.
        # Written without a lock: extend runs only with the GIL, where its stores and
        # the monitor's are not torn (see extend).
        self.alarm: Alarm | None = None
        self.extend_at = float("inf")
        # When extend stops putting looks off, so that one looks at the GIL (see
        # _sharing; inf: never), and when it last had the GIL back from a sleep.
        self.probe_at = float("inf")
        self.resumed = 0.0
        self._stopping = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.alarm = new_alarm()
        self.thread = threading.Thread(target=self._main, name="gorun-sysmon", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.extend_at = float("inf")
            self.cond.notify()
        alarm = self.alarm
        if alarm is not None:
            alarm.arm(0)  # go off now: it may sleep on it (an extend sees _stopping)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()

    def poke(self) -> None:
        """A goroutine was queued: make sure the monitor is watching."""
        if self.idle and self.thread is not None:
            with self.cond:
                if self.idle:
                    self.idle = False
                    rt = self.runtime  # a look at the GIL is due in a while (_sharing)
                    gap = rt.probe_gap if rt.permit is not None else float("inf")
                    self.probe_at = time.perf_counter() + gap
                    if self.alarm is None:
                        self.cond.notify()
                    else:
                        # Not woken now (it would want the GIL from this thread): what
                        # was just queued has not waited past its grace yet, so the
                        # first look is a period away, and extend may put it off.
                        self._arm(SYSMON_MIN)

    def _main(self) -> None:
        quiet = 0.0  # how long its looks have found nothing queued
        while True:
            fresh = self._wait() if self.alarm is not None else self._wait_on_cond()
            if fresh is None:
                return
            with self.cond:
                due, self.due = self.due, float("inf")  # running: it has the GIL
                if self._stopping:
                    return
            quiet = self._look(0.0 if fresh else quiet, due)

    def _wait_on_cond(self) -> bool | None:
        # Sleep until the next look, on cond: whether it was idle until now (None: stop).
        with self.cond:
            if self._stopping:
                return None
            fresh = self.idle
            if fresh:
                self.due = float("inf")
                self.cond.wait()
                if self._stopping:
                    return None
                # Poked: what was just queued has not waited past its grace yet, so
                # the first look is a period away.
                self.delay = SYSMON_MIN
            self.due = time.perf_counter() + self.delay
            self.cond.wait(self.delay)
            self.resumed = time.perf_counter()
        return fresh

    def _wait(self) -> bool | None:
        # Sleep until the next look, on the alarm: whether it was idle until now (None:
        # stop). Idle, the alarm is not armed until poke arms it. It may also go off
        # while idle, armed by an extend that raced with going idle: sleep on then.
        assert self.alarm is not None
        fresh = False
        while True:
            with self.cond:
                if self._stopping:
                    return None
                if self.idle:
                    self.due = self.extend_at = float("inf")
                    fresh = True
                elif not fresh:
                    self._arm(self.delay)
            self.resumed = self.alarm.wait()
            self.extend_at = float("inf")
            if not self.idle:
                return fresh

    def _look(self, quiet: float, due: float) -> float:
        # One look at the queues, after a sleep until *due*; sets the period to the
        # next, returns the quiet time.
        held = self.runtime.send_deferred()
        queued, stuck = self.runtime.find_stuck()
        if queued:
            # How soon it had the GIL tells whether to share the permit (_sharing).
            gap = self.runtime.gil_probe(due, self.resumed, stuck)
            self.probe_at = float("inf") if gap is None else self.resumed + gap
        delay = self.delay
        if stuck:
            self.delay = SYSMON_MIN
            return 0.0
        if queued:
            # Goroutines wait, but their loops get to them: keep watching, less and
            # less often. Each look takes the GIL from a busy worker, which costs it a
            # hand-over (tens of microseconds or more) every time.
            self.delay = min(delay * 2, SYSMON_MAX)
            return 0.0
        if held:
            # Held-back wake-ups are normally sent within microseconds: keep an eye on
            # them, at the slowest rate.
            self.delay = SYSMON_MAX
            return 0.0
        quiet += delay
        self.delay = min(delay * 2, SYSMON_MAX)
        if quiet >= SYSMON_IDLE_AFTER:
            self.runtime.end_sharing()
            with self.cond:
                self.idle = True
            # A goroutine queued after the scan above, by a thread that still saw idle
            # False, did not poke: look once more now that idle is set.
            if self.runtime.find_stuck()[0] or self.runtime.send_deferred():
                with self.cond:
                    self.idle = False
                self.delay = SYSMON_MIN
                return 0.0
        return quiet

    def _arm(self, delay: float) -> None:
        # Under cond: sleep on the alarm for *delay*, which extend may put off.
        now = time.perf_counter()
        self.delay = delay
        self.due = now + delay
        self.extend_at = now + delay / 2
        assert self.alarm is not None
        self.alarm.arm(delay)

    def extend(self, now: float, me: Caller) -> None:
        """A look put off: the only running worker, *me*, selected at *now* (own thread).

        Called from a busy select of the permit's holder, with nobody waiting for the
        permit, once the monitor's sleep is half over (``extend_at``). If every other
        worker is parked and not woken, only *me*'s queue can hold goroutines, and its
        select has just shown that *me* is not stuck: a look now would find them queued
        and none stuck. So this does what such a look does: it doubles the period (up
        to SYSMON_MAX) and moves the alarm to one period from *now*. A loop that then
        blocks, or computes on, is looked at within a period of its last select, as
        before; one that goes on selecting is not interrupted. With nothing queued, or
        another worker awake, the monitor looks as planned (it counts quiet time, or
        looks at the others). Only with the GIL (the permit's builds): the fields are
        hints, and a race costs a look too many or one period's delay at most.
        """
        if (not me.runq and me.runnext is None) or now >= self.probe_at:
            self.extend_at = self.due  # (the look at due is to look at the GIL)
            return
        for w in me.others:
            if not w.parked or w.notified:
                self.extend_at = self.due
                return
        alarm = self.alarm
        if alarm is None or self._stopping or self.idle:
            self.extend_at = float("inf")
            return
        delay = self.delay = min(self.delay * 2, SYSMON_MAX)
        self.due = now + delay
        self.extend_at = now + delay / 2
        alarm.arm(delay)
        if self._stopping:  # stop armed it to go off at once just before us: again
            alarm.arm(0)
