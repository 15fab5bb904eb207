"""The idle side of a worker: parking in its loop's selector, and looking for work.

A stdlib loop calls its selector's ``select`` once per iteration; the worker installs
`Parking.select` there (``Worker.attach``). With callbacks ready (``timeout == 0``) the
loop is busy: the select sends held-back wake-ups, shares the GIL (see ``_wakeup``) and
polls only if the loop watches a file. With nothing ready the worker is idle: it steals
from a stuck worker's queue, or parks (``parked`` under its lock, see ``_worker``), and
the last worker to park calls the runtime's ``park_watch`` hook (deadlock detection
registers there). A uvloop worker has no selector to park in: a tick that finds nothing
to start is where it counts itself idle (`Parking.idle_without_selector`).

``select_idle`` runs once per message between two workers, so its common case runs
inline: nothing queued elsewhere (no steal), another worker awake (no park watch).
Parking and unparking follow the invariant in ``_worker``'s docstring: ``parked`` is set
under the lock, with ``notified`` cleared (a poster that saw this worker parked just
before its last unpark may have set it since); both are cleared after the select
without the lock (a poster that still sees the worker parked costs one spurious
wake-up, which the next select reads). Callbacks posted meanwhile (mostly: resolve a
future that another thread handed a value to) run right after the select, so what they
schedule runs in the same loop iteration, not one ``call_soon`` hop later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._permit import COMPUTE_LIMIT, look
from ._selector import STANDBY_RECHECK, ParkingSelector, base_select
from ._wakeup import SHARE_EVERY, Wakeups, perf_counter

if TYPE_CHECKING:
    import threading

    from ._permit import Sample, Turn
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
    turn: Turn
    cpu_clock: int | None
    cpu_sample: Sample | None
    leader_sample: Sample | None
    schedule_tick: Callable[[], None]
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
        permit = self.permit
        if permit is not None and not permit.shared:
            now = self.last_select = perf_counter()
            if permit.holder is not self or permit.waiters:
                permit.pass_turn(self)  # another worker's turn (or ours was taken)
            else:
                permit.since = now  # not stuck
                if now >= self.sysmon.extend_at:
                    self.sysmon.extend(now, self)  # spares the monitor a look
        elif self.woken:
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
        if len(selector.watched) > 1 or selector.signals:
            events = base_select(selector, 0)
            if selector.standby:
                events = selector.screen(events)
        else:
            events = []
        if self.inbox:
            self.drain_inbox()
        if self.runq or self.runnext is not None:
            self.schedule_tick()
        return events

    def run_on(self) -> bool:
        """Whether the loop may run the callbacks its last batch made ready at once,
        without a select first (``LoopBase._run_once`` asks, when no timer is pending).

        True when that select would have nothing to do: no file to poll (as in select),
        nothing posted or queued, no wake-up held back, no GIL to share, and the permit
        held with nobody waiting for it. It then counts as a busy select: ``selects``,
        ``last_select`` and the permit's ``since`` move on. A message between two
        goroutines of one loop then costs a batch, not a loop iteration.
        """
        selector: Any = self.selector
        if (len(selector.watched) > 1 or selector.signals or self.deferred or self.inbox
                or self.runq or self.runnext is not None or self.woken or self.shares_gil):
            return False  # (a file first: a server's loop answers at once)
        permit = self.permit
        if permit is not None and not permit.shared:
            if permit.holder is not self or permit.waiters:
                return False
            permit.since = self.last_select = perf_counter()
        self.selects += 1
        return True

    def select_idle(self, timeout: float | None) -> list[tuple[Any, int]]:
        """The loop's select with nothing ready: steal or park, select, unpark (see above)."""
        self._batch = 1  # see Worker.tick
        retry: float | None = None
        for w in self.others:
            if w.runq or w.runnext is not None:
                retry = self.runtime.steal_into(self._as_worker())
                break
        if retry == 0.0:
            timeout = 0
        else:
            lock = self.lock
            lock.acquire()
            try:
                if self.inbox or self.runq or self.runnext is not None or self.closed:
                    timeout = 0
                else:
                    self.parked = True
                    self.notified = False
            finally:
                lock.release()
            if timeout != 0 and retry is not None and (timeout is None or retry < timeout):
                timeout = retry  # a goroutine elsewhere becomes stealable then
            elif timeout is None and self.runtime.park_watch is not None:
                for w in self.others:  # the watch runs on the last worker to park only
                    if not w.parked or w.notified:
                        break
                else:
                    timeout = self._watch()
        if self.inbox:
            timeout = 0  # posted meanwhile: the drain below runs it
        if self.runq or self.runnext is not None:
            self.schedule_tick()
            timeout = 0
        self._about_to_park()
        selector: Any = self.selector
        permit = self.permit
        try:
            return selector.select_parked(timeout)  # type: ignore[no-any-return]
        finally:
            self.busy_since = self.last_select = perf_counter()
            self.quiet = not selector.got_any and not self.inbox
            self._unpark()
            if permit is not None:
                permit.acquire(self)  # posts meanwhile are drained below, with it
            if self.inbox:
                self.drain_inbox()
            if self.runq or self.runnext is not None:
                self.schedule_tick()

    def _unpark(self) -> None:
        # Back from the select: no longer parked, and no longer looking for work.
        if self.parked:
            # Under the lock, which wake_to_steal holds while it reads parked: either
            # it saw this worker parked, and the token wake_idle gave it is marked
            # by now (spinning, read below), or it saw it awake and woke nobody.
            lock = self.lock
            lock.acquire()
            try:
                self.parked = False
                self.notified = False
            finally:
                lock.release()
        if self.spinning:
            # Woken to look for work (wake_idle's token): give the token back now,
            # not at the look. This loop may first run work of its own, and a
            # callback that blocks its thread would keep the token, so that no other
            # idle worker would ever be woken to take what waits (a loop blocked
            # with goroutines queued). Its next idle select still looks.
            self.runtime.stop_spinning(self._as_worker())

    def _about_to_park(self) -> None:
        # Held-back wake-ups go out last, just before the select releases the GIL, and
        # so does the permit.
        deferred = self.deferred
        if deferred:
            self.deferred = []
            for target in deferred:
                target.wake_now()
        if self.woken:
            self.woken.clear()
        self.selects += 1
        if self.permit is not None:
            self.permit.release(self)

    def takes_connections(self, sock: Any) -> bool:
        """Whether this worker accepts promptly on its listening socket *sock*.

        True if its loop watches *sock* and is in its select, or selected within
        ``STANDBY_RECHECK``; with the run permit, also while its thread computes in a
        long iteration, up to ``COMPUTE_LIMIT``: another worker that accepted would only
        contend with it for the GIL, and keep the connection. False if it is stuck (a
        callback blocks its thread). Read from other threads, by the stand-by listeners
        that leave connections to this worker (see ``ParkingSelector.stand_by``), about
        every ``STANDBY_RECHECK`` while a connection waits; a hint, as the answer may
        change at once.
        """
        fd = sock.fileno()
        selector = self.selector
        if fd < 0 or selector is None or fd not in selector.watched:
            return False
        if self.parked:
            return True
        now = perf_counter()
        busy_for = now - self.last_select
        if busy_for <= STANDBY_RECHECK:
            return True
        if self.permit is None or self.permit.shared or busy_for > COMPUTE_LIMIT:
            return False
        # Its thread's share of the CPU since the last look, as the permit's probe
        # measures it; a first look (none within two rechecks) waits for the next.
        self.leader_sample, ran = look(self, self.leader_sample, now, 2 * STANDBY_RECHECK)
        return self.leader_sample is not None and ran is not False

    def _watch(self) -> float | None:
        # The last worker to park (every other one parked and not woken; between workers
        # that pass messages the other one is usually running or woken, and select_idle
        # does not get here): the park watch gives its select timeout.
        watch = self.runtime.park_watch
        return watch(self._as_worker()) if watch is not None else None

    def idle_without_selector(self) -> None:
        """A uvloop worker's tick found nothing to start: steal, or count itself parked."""
        # uvloop: there is no select() to hook, so a tick that found nothing to start is
        # where the worker counts itself idle and looks for work elsewhere.
        self._batch = 1  # see Worker.tick
        retry = self.runtime.steal_into(self._as_worker())
        if retry == 0.0:
            self.schedule_tick()
            return
        with self.lock:
            self.parked = not self.has_queued()
        if retry is not None:
            self.loop.call_later(retry, self.tick)

    def drain_inbox(self) -> None:
        """Run the callbacks posted to this worker (own thread)."""
        # No lock: this thread is the only one that takes from the inbox, and a deque's
        # append and popleft are atomic (under the GIL, and by the deque's own lock on a
        # free-threaded build). Only what was posted before the drain began runs now:
        # what the callbacks post to this worker waits for the next drain.
        inbox = self.inbox
        popleft = inbox.popleft
        for _ in range(len(inbox)):
            fn, args = popleft()
            try:
                fn(*args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(fn, exc)

    def _callback_failed(self, fn: Callable[..., object], exc: BaseException) -> None:
        self.loop.call_exception_handler(
            {
                "message": f"Exception in callback {fn!r} posted to gorun worker {self.index}",
                "exception": exc,
            }
        )
