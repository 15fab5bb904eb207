"""The idle side of a worker: parking in its loop's selector, and looking for work.

A stdlib loop calls its selector's ``select`` once per iteration; the worker installs
`Parking.select` there (``Worker.attach``). With callbacks ready (``timeout == 0``) the
loop is busy: the select sends held-back wake-ups, shares the GIL (see ``_wakeup``) and
polls only if the loop watches a file. With nothing ready the worker is idle: it steals
from a stuck worker's queue, or parks (``parked`` under its lock, see ``_worker``), and
the last worker to park calls the runtime's ``park_watch`` hook (deadlock detection
registers there). A uvloop worker has no selector to park in: a tick that finds nothing
to start is where it counts itself idle (`Parking.idle_without_selector`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._selector import ParkingSelector, base_select
from ._wakeup import SHARE_EVERY, Wakeups, perf_counter

if TYPE_CHECKING:
    import threading

    from ._worker import Startable, Worker


class Parking(Wakeups):
    """The idle side of a worker (``_worker.Worker`` derives from it)."""

    # Declared here, set by Worker.__init__ and Worker.attach.
    selector: ParkingSelector | None
    lock: threading.Lock
    inbox: deque[tuple[Callable[..., object], tuple[Any, ...]]]
    runq: deque[Startable]
    runnext: Startable | None
    others: tuple[Parking, ...]
    spinning: bool
    quiet: bool
    last_select: float
    _batch: int
    schedule_tick: Callable[[], None]
    drain_inbox: Callable[[], None]
    has_queued: Callable[[], bool]

    def _as_worker(self) -> Worker:
        return self  # type: ignore[return-value]  # Worker is the only subclass

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        """The loop's ``selector.select`` (installed by attach): park when idle, else poll.

        With callbacks ready (``timeout == 0``) the loop is busy. This runs once per loop
        iteration, so it does as little as it can: send the wake-ups it held back, let
        woken workers and other busy ones have the GIL now and then, and notice posted
        work.
        """
        if timeout != 0:
            return self.select_idle(timeout)
        if self.deferred:
            self.flush_wakes()
        if self.woken:
            self.hand_over_gil()
        if self.shares_gil:
            now = self.last_select = perf_counter()
            if now - self.busy_since >= SHARE_EVERY:
                self.share_gil(now)
            elif now >= self.sysmon.due:
                self.yield_to_sysmon()
        self.selects += 1
        # A busy loop whose only file is its self-pipe has nothing to poll for: a
        # callback posted with call_soon_threadsafe is on the ready queue already, and
        # gorun writes the wake-up byte only to a parked worker. Skipping the poll saves
        # a system call and a release of the GIL per iteration (the largest reason why
        # a hand-off between goroutines on one gorun loop costs less than on a stock
        # loop). The bytes it leaves in the pipe are read at the next idle select. A
        # loop that watches a socket or handles signals polls every time, as asyncio
        # does.
        selector: Any = self.selector
        events = (
            base_select(selector, 0) if len(selector.watched) > 1 or selector.signals else []
        )
        if self.inbox:
            self.drain_inbox()
        if self.runq or self.runnext is not None:
            self.schedule_tick()
        return events

    def select_idle(self, timeout: float | None) -> list[tuple[Any, int]]:
        """The loop's select when it has nothing ready: steal or park, select, unpark."""
        # This runs once per message between two workers: the helpers it calls return
        # early in the common case.
        self._batch = 1  # see __init__
        # Steal only if another worker has goroutines queued. Between workers that pass
        # messages (or in an idle program) none has: this test is all that runs.
        retry: float | None = None
        for w in self.others:
            if w.runq or w.runnext is not None:
                retry = self.runtime.steal_into(self._as_worker())
                break
        else:
            if self.spinning:
                self.runtime.stop_spinning(self._as_worker())
        timeout = 0 if retry == 0.0 else self._park(timeout, retry)
        if self.inbox:
            timeout = 0  # posted meanwhile: the drain below runs it
        if self.runq or self.runnext is not None:
            self.schedule_tick()
            timeout = 0
        # Wake-ups held back (see defer_wake) go out last, as close as can be to the
        # select that releases the GIL: a worker woken earlier would wake only to wait
        # for the GIL while this one still steals, parks and watches.
        if self.deferred or self.woken:
            self.send_deferred_parking()
        self.selects += 1
        selector: Any = self.selector
        try:
            return selector.select_parked(timeout)  # type: ignore[no-any-return]
        finally:
            # Busy from now on: the time spent waiting for the GIL to come back after
            # the select does not count (see share_gil).
            self.busy_since = self.last_select = perf_counter()
            self.quiet = not selector.got_any and not self.inbox
            if self.parked:
                # Awake, without the lock: a poster that still sees this worker parked
                # writes a wake-up byte it did not need to (the next select reads it),
                # and one that sees it awake adds to the inbox, which is drained below or
                # looked at under the lock before the next park. In between, parked is
                # False and notified True: awake to anyone who looks, the park watch
                # included. (Park clears notified again, under the lock.)
                self.parked = False
                self.notified = False
            # Posted callbacks (mostly: resolve the future of a goroutine that another
            # thread handed a value to) run right here, so the callbacks they schedule
            # (that goroutine's next step) run in this same loop iteration, not one
            # call_soon hop later.
            if self.inbox:
                self.drain_inbox()
            if self.runq or self.runnext is not None:
                self.schedule_tick()

    def _park(self, timeout: float | None, retry: float | None) -> float | None:
        # Mark this worker parked if its queues are empty (under the lock), and return
        # the select timeout: 0 if something is queued, else *timeout* shortened to
        # *retry* (when a goroutine elsewhere becomes stealable), or the park watch's.
        lock = self.lock
        lock.acquire()
        try:
            if self.inbox or self.runq or self.runnext is not None or self.closed:
                return 0
            self.parked = True
            # Cleared here, under the lock, as well as at the unpark in select_idle,
            # which does without it: a poster that saw this worker parked just before
            # that unpark may have set it since (and written a wake-up byte, which the
            # next select reads). Left set, it would keep the next poster from waking
            # this worker.
            self.notified = False
        finally:
            lock.release()
        if retry is not None and (timeout is None or retry < timeout):
            return retry
        watch = self.runtime.park_watch
        if timeout is None and watch is not None:
            # The hook runs on the last worker to park only: every other one parked and
            # not woken. Between workers that pass messages, the other one is usually
            # running or woken, so this test is all that runs.
            for w in self.others:
                if not w.parked or w.notified:
                    return None
            return watch(self._as_worker())
        return timeout

    def idle_without_selector(self) -> None:
        """A uvloop worker's tick found nothing to start: steal, or count itself parked."""
        # uvloop: there is no select() to hook, so a tick that found nothing to start is
        # where the worker counts itself idle and looks for work elsewhere.
        self._batch = 1  # see __init__
        retry = self.runtime.steal_into(self._as_worker())
        if retry == 0.0:
            self.schedule_tick()
            return
        with self.lock:
            self.parked = not self.has_queued()
        if retry is not None:
            self.loop.call_later(retry, self.tick)
