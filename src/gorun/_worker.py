"""A worker: one asyncio event loop pinned to one OS thread, and the queues that feed it.

Each worker owns three queues, all guarded by ``worker.lock``:

* ``runnext``: the goroutine most recently spawned on this worker. It runs first, so a
  goroutine and the one it just spawned (a message-passing pair) stay on one loop and talk
  through same-loop hand-offs instead of cross-thread wake-ups (Go's ``runnext`` slot).
* ``runq``: goroutines placed here that no loop has started yet. Idle workers steal from its
  head once its oldest entry has waited longer than a grace period.
* ``inbox``: callbacks posted from other threads (a waiter to wake, a cancel to deliver).

Invariant of the wake-up protocol (stdlib loops): ``parked`` is True only while the owner
thread is in ``selector.select()``, having found its loop idle and all three queues empty
under the lock (it may still poll with a zero timeout, if it then saw a new entry), and
for the moment after that select returns, until the owner clears it (without the lock).
A poster appends under the lock and wakes the worker only if it is parked and nobody has
woken it yet (``notified``, cleared when the worker parks and when it unparks), so a
burst of posts costs one cross-thread wake-up, and a worker that is running anyway is
never woken: it looks at its queues, under the lock, before it next blocks. A poster
that sees it parked in that moment after the select costs it one spurious wake-up.
uvloop exposes no selector, so uvloop workers are woken once per drain (``notified`` is
cleared when the drain runs).

What a worker queues is a `Startable` (a goroutine, to the layers above); the worker
starts it, and never needs to know more about it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._compat import DirectHandle, handle_failed, loop_selector, self_pipe, signal_handlers
from ._parking import Parking
from ._permit import Turn
from ._selector import ParkingSelector
from ._thread_state import state as thread_state
from ._wakeup import GIL_ENABLED, note_woken, perf_counter

if TYPE_CHECKING:
    from ._permit import Permit, Sample
    from ._runtime import Runtime

#: The most goroutines one tick starts. On an asyncio loop a tick runs each goroutine it
#: starts up to its first await before it takes the next (see _start_eagerly), until
#: EAGER_SLICE has passed: a goroutine that blocks this thread holds up no other, which
#: stays queued and can be stolen. Where gorun cannot run a Task's first step itself
#: (uvloop, asyncio's debug mode) a started goroutine waits for the loop's next iteration,
#: and one that blocks the thread there holds up those started with it, which can no
#: longer move. So there, with other workers, a tick starts one (a batch of up to 8 was
#: tried, and pinned two goroutines that block behind each other). A lone worker has
#: nobody to hand work to: its batch grows (doubling) while a full batch ran quickly,
#: less than FAST_TICK per goroutine between ticks, which also bounds how long started
#: goroutines hold up I/O on this loop; a slow tick resets it to 1. An empty tick proves
#: nothing.
MAX_BATCH = 64
#: A tick interval shorter than this per goroutine of the last batch means that the batch
#: ran quickly: start more per tick.
FAST_TICK = 50e-6
#: How long one tick may start goroutines eagerly before the loop selects (and runs I/O
#: callbacks) again. With the GIL, goroutines of 0.2 ms of CPU ran 1% slower with 0.5 ms
#: (a loop iteration per two or three) than with 2 ms, within the 5 ms switch interval.
#: On a free-threaded build a tick's end also wakes a thief for a backlog: 0.5 ms there.
EAGER_SLICE = 2e-3 if GIL_ENABLED else 0.5e-3
#: Goroutines queued on one worker within this time share one queue time (one float),
#: so a thief may see one as up to a quarter of the steal grace older than it is. With
#: a float of its own, freed as each goroutine started, the CPU-bound goroutines of a
#: burst of go() calls ran 2-3% slower (CPython 3.11): that free changes which memory
#: their own integers and floats then get. Shared, one float is freed per burst.
QUEUE_TIME_GRAIN = 50e-6


class Startable(Protocol):
    """What a worker queues and starts (a goroutine): the scheduler's whole view of it."""

    #: ``perf_counter()`` when it was queued, give or take QUEUE_TIME_GRAIN (see
    #: `Worker.queue_time`); thieves read it.
    _queued_at: float

    def _start_on(self, worker: Worker) -> asyncio.Future[Any] | None:
        """Start it on *worker*'s loop (its thread): its Task, with the Startable itself
        among the Task's done callbacks (see ``_runtime.started_as``); None if it was cancelled
        meanwhile, or could not start."""

    def _cancel_queued(self, msg: Any) -> bool:
        """Cancel it before any worker started it; False if one did first."""


class Worker(Parking):
    """One event loop on one OS thread, with its run queues; see the module docstring."""

    def __init__(self, runtime: Runtime, index: int) -> None:
        self.runtime = runtime
        self.index = index
        #: ``"asyncio"`` (a selector loop it parks in) or ``"uvloop"``; set by attach.
        self.kind = "asyncio"
        #: Whether the worker parks in its loop's selector (a stdlib loop); set by attach.
        #: A plain attribute: it is read several times per message.
        self.parks_in_selector = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by attach
        self.selector: ParkingSelector | None = None
        self.thread: threading.Thread | None = None
        self.thread_id: int | None = None
        self.lock = threading.Lock()  # guards the next seven
        self.runq: deque[Startable] = deque()
        self.runnext: Startable | None = None
        self.inbox: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self.parked = False
        self.notified = False
        self.closed = False
        self.wakeups = 0
        # Bumped each time the worker is about to select; a worker that woke this one
        # watches it to see it get the GIL and come back (see Wakeups.hand_over_gil).
        self.selects = 0
        # Owned by the worker's own thread (others read them only as hints or for stats):
        # how many goroutines started here and finished; those started and not done,
        # newest first, linked through their own fields (what keeps them alive).
        self.started = 0
        self.finished = 0
        self.running: Any = None
        self.stolen = 0
        self.last_tick = 0.0
        self._queue_time = 0.0  # the last queue time handed out (see queue_time)
        # Whether a tick is queued; queue_tick queues one (call_soon, or attach's DirectHandle).
        self._tick_scheduled = False
        self.queue_tick: Callable[[], object] = self._call_soon_tick
        # How many goroutines a tick starts (see tick); reset to 1 whenever it parks.
        self._batch = 1
        self._started_last = 0
        #: Whether the last select returned with nothing, not even a wake-up byte, and
        #: nothing was posted meanwhile (read by the park_watch hook).
        self.quiet = False
        # When this worker's loop last came back from select (kept with the GIL and
        # other workers only: it is what thieves look at, see Runtime.steal_into).
        self.last_select = 0.0
        self._max_batch = MAX_BATCH if runtime.procs == 1 else 1  # see tick
        #: The loop's queue of ready callbacks, where a tick can run a Task's first step
        #: itself (an asyncio loop, set by attach); None where it cannot.
        self.ready: deque[Any] | None = None
        # Guarded by runtime.lock: this worker was woken to look for work to steal.
        self.spinning = False
        #: The runtime's other workers (set by the runtime once it made them all).
        self.others: tuple[Worker, ...] = ()
        #: The runtime's run permit, if this worker takes part (set by attach; _permit).
        self.permit: Permit | None = None
        #: What this worker waits on for the permit (made by attach, with the permit).
        self.turn: Turn = None  # type: ignore[assignment]
        self.cpu_clock: int | None = None  # its thread's CPU clock, for the permit
        self.cpu_sample: Sample | None = None  # see _permit.computing
        self.leader_sample: Sample | None = None  # see takes_connections
        self.init_wakeups(runtime)

    def __repr__(self) -> str:
        return f"<gorun Worker {self.index} ({self.kind})>"

    # -- set-up -------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind this worker to *loop*, which must run on the thread that runs the worker."""
        self.loop = loop
        loop._gorun_worker = self  # type: ignore[attr-defined]
        selector = loop_selector(loop)
        if not isinstance(selector, ParkingSelector):
            self.kind = "uvloop"
            self.wake_fn = self.wake_by_callback
            return
        self.kind = "asyncio"
        self.parks_in_selector = True
        self.ready = getattr(loop, "_ready", None)
        if self.ready is not None:
            self.queue_tick = functools.partial(self.ready.append, DirectHandle(self.tick, loop))
        self.defers_wakes = GIL_ENABLED
        self.permit = self.runtime.permit
        if self.permit is not None:
            self.turn = Turn()
            # Turns come with the permit: no hand-over or sharing of the GIL needed.
            self.shares_gil = False
        self.selector = selector
        # The hooks: the loop's select is this worker's from now on, and its iteration
        # asks run_on (LoopBase subclasses only; other loops never do).
        selector.select = self.select
        loop._run_on = self.run_on  # type: ignore[attr-defined]
        handlers = signal_handlers(loop)  # the live dict, empty until one is added
        if handlers is not None:
            selector.signals = handlers
        wake_sock, write_sock, write_to_self = self_pipe(loop)
        if wake_sock is not None:
            selector.wake_sock = wake_sock
            selector.wake_fd = wake_sock.fileno()
        if write_sock is not None:
            # asyncio's _write_to_self() without its Python frame: the same send,
            # whose OSError (loop closed, pipe full) wake_now() ignores as it does.
            self.wake_fn = functools.partial(write_sock.send, b"\0")
        else:
            self.wake_fn = write_to_self

    # -- queues -----------------------------------------------------------------------------

    def has_queued(self) -> bool:
        """True if the queues hold anything (an unlocked hint; re-checked under the lock)."""
        return bool(self.inbox or self.runq or self.runnext is not None)

    def push_local(self, g: Startable) -> None:
        """Queue *g*, spawned on this worker's own thread, in the ``runnext`` slot."""
        now = perf_counter()  # queue_time(), inline (tests/test_copies.py drives both)
        shared = self._queue_time
        if now - shared < QUEUE_TIME_GRAIN:
            now = shared
        else:
            self._queue_time = now
        g._queued_at = now
        # acquire() and release(), not `with`, which costs twice as much on CPython 3.11:
        # this runs per spawn (and the tick's per batch).
        lock = self.lock
        lock.acquire()
        try:
            kicked = self.runnext
            self.runnext = g
            if kicked is not None:
                self.runq.append(kicked)
        finally:
            lock.release()
        if not self._tick_scheduled:  # schedule_tick(), inline: this runs per spawn
            self._tick_scheduled = True  # (tests/test_copies.py drives both)
            self.queue_tick()
        # No idle worker is woken here: this worker usually gets to its queue within
        # microseconds, and a thief woken now would split a goroutine from the partner
        # it was spawned with. If this loop stays busy, its next tick (or the monitor,
        # for a loop stuck in one callback) wakes an idle worker to take the rest. A
        # lone worker has no monitor.
        runtime = self.runtime
        if runtime.sysmon.idle and runtime.procs > 1:
            runtime.sysmon.poke()

    def push_remote(self, g: Startable) -> bool:
        """Queue *g* from another thread; return False if this worker no longer runs."""
        g._queued_at = self.queue_time()
        lock = self.lock
        lock.acquire()  # not `with`: see push_local
        try:
            if self.closed:
                return False
            self.runq.append(g)
            wake = self._claim_wake()
        finally:
            lock.release()
        if wake:
            self.wake_now()
            note_woken(self)
        else:
            runtime = self.runtime
            runtime.wake_idle()
            if runtime.sysmon.idle and runtime.procs > 1:
                runtime.sysmon.poke()
        return True

    def queue_time(self) -> float:
        """``perf_counter()`` now, or the float last returned if that is less than
        QUEUE_TIME_GRAIN older. Any thread: a race may lose a chance to share, or hand
        out a time another thread read a moment later (younger by that moment)."""
        now = perf_counter()
        shared = self._queue_time
        if now - shared < QUEUE_TIME_GRAIN:
            return shared
        self._queue_time = now
        return now

    def post(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on this worker's loop soon, from any thread.

        Returns False if the worker has shut down, in which case nothing will run.
        """
        me: Worker | None = thread_state.worker  # current_worker(), without the call
        if me is self:
            try:
                self.loop.call_soon(fn, *args)
            except RuntimeError:
                return False
            return True
        # Made before taking the lock: an allocation may run the garbage collector, and
        # a finalizer it runs may post to this worker, which would wait for the lock.
        item = (fn, args)
        lock = self.lock
        lock.acquire()  # not `with`: see push_local (this runs per message between workers)
        try:
            if self.closed:
                return False
            self.inbox.append(item)
            # A copy of _claim_wake() (tests/test_copies.py drives both).
            if self.notified or (self.parks_in_selector and not self.parked):
                return True
            self.notified = True
            self.wakeups += 1
        finally:
            lock.release()
        if me is not None and me.defers_wakes:
            me.defer_wake(self)
        else:
            self.wake_now()
            note_woken(self)
        return True

    def _claim_wake(self) -> bool:
        # Called with self.lock held: decide whether this poster must wake the worker.
        if self.notified:
            return False
        if self.parks_in_selector and not self.parked:
            return False  # it is running and will look at its queues before it blocks
        self.notified = True
        self.wakeups += 1
        return True

    def wake_to_steal(self) -> bool:
        """Wake this worker if it is parked, so it looks for work; True if woken."""
        with self.lock:
            if not self.parked or self.notified or self.closed:
                return False
            self.notified = True
            self.wakeups += 1
        self.wake_now()
        note_woken(self)
        return True

    def queued(self) -> list[Startable]:
        """What waits to start on this worker: ``runq``, ``runnext``, then starts posted to
        its inbox (``post(g._start_on, worker)``). A snapshot, from any thread.

        Read without the lock, which nothing may hold while allocating (a finalizer the
        garbage collector runs may post to this worker); a queue that changes while it is
        copied is copied again.
        """
        for _ in range(10):
            try:
                found = list(self.runq)
                posted = list(self.inbox)
                break
            except RuntimeError:  # "deque mutated during iteration"
                continue
        else:
            return []
        runnext = self.runnext
        if runnext is not None:
            found.append(runnext)
        for fn, _args in posted:
            if getattr(fn, "__name__", None) == "_start_on" and hasattr(fn, "__self__"):
                found.append(fn.__self__)
        return found

    def drop_queued(self) -> None:
        """Cancel every goroutine still waiting in this worker's queues (at shutdown)."""
        with self.lock:
            queued = list(self.runq)
            self.runq.clear()
            if self.runnext is not None:
                queued.append(self.runnext)
                self.runnext = None
        for g in queued:
            g._cancel_queued("the gorun runtime is shutting down")

    # -- the worker's own thread ---------------------------------------------------------

    def schedule_tick(self) -> None:
        """Make sure a tick runs on this loop soon (owner thread only)."""
        if not self._tick_scheduled:
            self._tick_scheduled = True
            self.queue_tick()

    def _call_soon_tick(self) -> None:
        self.loop.call_soon(self.tick)

    def tick(self) -> None:
        """Run posted callbacks, then start a batch of queued goroutines."""
        self._tick_scheduled = False
        now = perf_counter()
        interval = now - self.last_tick
        self.last_tick = now
        parks = self.parks_in_selector
        if not parks:
            with self.lock:
                self.notified = False
                self.parked = False
        if self.inbox:
            self.drain_inbox()
        ready = self.ready
        if ready is not None and not self.loop._debug:  # type: ignore[attr-defined]
            more = self._start_eagerly(ready, now)
        else:
            more = self._start_batch(interval)
        if more:
            if not self._tick_scheduled:  # schedule_tick(), inline (tests/test_copies.py)
                self._tick_scheduled = True
                self.queue_tick()
            runtime = self.runtime
            # With the permit unshared, no thief could run while this loop computes: the
            # monitor wakes one if it blocks (see Placement.find_stuck).
            permit = runtime.permit
            if runtime.procs > 1 and (permit is None or permit.shared) and (
                not GIL_ENABLED or interval > runtime.stuck_after):
                self._wake_a_thief(now)
        elif not parks:
            self.idle_without_selector()

    def _take_next(self) -> Startable | None:
        # The next goroutine to start, runnext first (owner thread).
        lock = self.lock
        lock.acquire()  # not `with`: see push_local
        try:
            g = self.runnext
            if g is not None:
                self.runnext = None
            elif self.runq:
                g = self.runq.popleft()
        finally:
            lock.release()
        return g

    def _start_eagerly(self, ready: deque[Any], now: float) -> bool:
        # Start queued goroutines one at a time, each run up to its first await before
        # the next is taken (see EAGER_SLICE): one that blocks this thread holds up no
        # other, which stays queued and can be stolen. Returns whether work is left.
        deadline = now + EAGER_SLICE
        lock = self.lock
        for _ in range(MAX_BATCH):
            lock.acquire()  # _take_next(), inline (tests/test_copies.py drives both)
            try:
                g = self.runnext
                if g is not None:
                    self.runnext = None
                elif self.runq:
                    g = self.runq.popleft()
            finally:
                lock.release()
            if g is None:
                return bool(self.inbox)
            task = g._start_on(self)
            # The Task's first step, which it just queued, runs now rather than after
            # the next select (asyncio's "eager start", as the loop would run it: with
            # its own context, exception handling and current task). Other threads may
            # append to the ready queue at any time (call_soon_threadsafe), and only
            # this one takes from it: pop, then look, and put back what is not the step
            # (a task factory may have run the step already, or queued something else).
            if task is not None and ready:
                step = ready.pop()
                if getattr(step._callback, "__self__", None) is task:
                    try:  # Handle._run(), inline, as LoopBase._run_once runs it
                        step._context.run(step._callback, *step._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        handle_failed(step, exc)
                else:
                    ready.append(step)
            if perf_counter() > deadline:
                break
        return bool(self.runq or self.runnext is not None or self.inbox)

    def _start_batch(self, interval: float) -> bool:
        # Start a batch of queued goroutines, whose first steps run after the next
        # select (a loop whose ready queue gorun cannot reach: uvloop, debug mode).
        batch = self._batch  # how many to start: see MAX_BATCH
        if self._started_last == batch and interval < FAST_TICK * batch:
            batch = min(batch * 2, self._max_batch)
        else:
            batch = 1
        self._batch = batch
        runq = self.runq
        # Made before taking the lock, which must not allocate an object the garbage
        # collector tracks: a finalizer run by a collection there could call go().
        taken: list[Startable] = []
        g = self._take_next()
        lock = self.lock
        lock.acquire()  # not `with`: see push_local
        try:
            while runq and len(taken) < batch - 1:
                taken.append(runq.popleft())
            more = bool(runq or self.inbox)
        finally:
            lock.release()
        self._started_last = 0 if g is None else 1 + len(taken)
        if g is not None:
            g._start_on(self)
        for g in taken:
            g._start_on(self)
        return more

    def _wake_a_thief(self, now: float) -> None:
        # Goroutines are left queued after a tick: wake an idle worker if the oldest has
        # waited past the grace. With the GIL, tick calls this only if this loop's last
        # iteration was long enough to count as stuck (see Runtime.steal_into): a loop
        # that iterates quickly serves its own queue best.
        try:
            waited = now - self.runq[0]._queued_at
        except IndexError:
            waited = 0.0
        if waited > self.runtime.steal_grace:
            self.runtime.wake_idle()
