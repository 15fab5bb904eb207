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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import select
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVarTuple

if TYPE_CHECKING:
    from ._goroutine import Goroutine
    from ._runtime import Runtime

#: The most goroutines one tick starts when the worker keeps up with its queue.
MAX_BATCH = 64
#: A tick interval shorter than this per goroutine of the last batch means that the batch
#: ran quickly: start more per tick.
FAST_TICK = 50e-6

#: The longest a worker waits for workers it woke to get the GIL (see Worker._settle).
SETTLE_TIMEOUT = 2e-3
#: How often it looks whether they have come back, napping in between.
SETTLE_POLL = 50e-6
#: How many selects in a row a worker waits for one it woke (see Worker._settle).
SETTLE_TRIES = 5
#: A worker busy this long with another worker awake lets it have the GIL (_share_gil).
SHARE_EVERY = 5e-3
#: How long it sleeps to do so.
SHARE_FOR = 50e-6
#: A busy worker lets the monitor thread have the GIL at most this often.
SYSMON_YIELD = 1e-3
#: False on a free-threaded build, where a woken thread needs no hand-over.
GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


class _ThreadState(threading.local):
    worker: Worker | None = None  # the worker whose loop runs on this thread, if any


_tls = _ThreadState()


def _nap(seconds: float) -> None:
    # Sleep with the GIL released. Not time.sleep() nor a timed lock acquire: tools that
    # flag blocking calls made from a running event loop (blockbuster) treat those as
    # bugs, and these naps are deliberate (see Worker._share_gil and Worker._settle).
    _select_nap([], [], [], seconds)


_perf_counter = time.perf_counter
_select_nap = select.select


def current_worker() -> Worker | None:
    """The gorun worker whose loop is running on this thread, if any."""
    worker: Worker | None = _tls.worker
    return worker


if sys.version_info >= (3, 12):
    loop_here = asyncio._get_running_loop
else:

    def loop_here() -> asyncio.AbstractEventLoop | None:
        """``asyncio._get_running_loop()``, at half the cost on a worker thread.

        On 3.11 asyncio's own function makes a ``getpid()`` system call each time (a
        check against fork), about 0.2 µs: a channel hand-off asks twice. A worker's
        thread runs nothing but its own loop, so its loop is the running one there.
        """
        worker: Worker | None = _tls.worker
        if worker is not None and worker.loop is not None:
            return worker.loop
        return asyncio._get_running_loop()


def set_current_worker(worker: Worker | None) -> Worker | None:
    """Make *worker* this thread's worker; return the previous one."""
    previous = current_worker()
    _tls.worker = worker
    return previous


_BaseSelector: type[selectors.BaseSelector] = selectors.DefaultSelector
_base_select = _BaseSelector.select
# epoll's poll(), when the default selector is EpollSelector (Linux): see select_parked.
_epoll_poll: Callable[..., list[tuple[int, int]]] | None = None
_EPOLLIN = _EPOLLOUT = 0
if getattr(selectors, "EpollSelector", None) is _BaseSelector:
    _epoll_poll = select.epoll.poll
    _EPOLLIN, _EPOLLOUT = select.EPOLLIN, select.EPOLLOUT


class ParkingSelector(_BaseSelector):  # type: ignore[misc,valid-type]
    """The loop's selector, extended: ``select(timeout)`` is where an idle worker parks.

    Before blocking, the worker drains its own queues and tries to steal; a poster that
    finds it parked writes to the loop's self-pipe, which makes the real select return.
    A subclass rather than a wrapper, because the loop calls ``select`` once per
    iteration: one Python call less there is worth it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.worker: Worker | None = None
        # The loop's signal handlers (set by Worker.attach): a signal reaches them as a
        # byte on the self-pipe, so while there are any, every select polls.
        self.signals: dict[int, Any] = {}
        # The read end of the loop's self-pipe, and its fd (set by Worker.attach).
        self.wake_sock: socket.socket | None = None
        self.wake_fd = -1
        self.got_any = False  # see select_parked

    def select_parked(
        self, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """``select(timeout)`` for a worker with nothing to do, minus the wake-up bytes.

        A wake-up byte (gorun's, or ``call_soon_threadsafe``'s) only ends the select:
        the callback it announces is queued already. The bytes are read here, in one
        ``recv``, not by asyncio's reader callback for the self-pipe, which costs a
        Handle run and a second ``recv`` that ends in BlockingIOError. With the Python
        code of ``EpollSelector.select`` done inline too, that is about a tenth of the
        instructions of a message between workers. Bytes left over keep the pipe
        readable: the next select returns at once and reads on. Not while the loop has
        signal handlers, whose numbers come as such bytes for asyncio to dispatch.
        ``got_any``: whether anything came, a wake-up byte included (for the deadlock
        watch).
        """
        wake_fd = self.wake_fd
        if _epoll_poll is None or wake_fd < 0 or self.signals:
            events = _base_select(self, timeout)
            self.got_any = bool(events)
            if wake_fd >= 0 and not self.signals:
                for i, (key, _) in enumerate(events):
                    if key.fd == wake_fd:
                        self._read_wake_bytes()
                        del events[i]
                        break
            return events
        # EpollSelector.select, inline.
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:
            timeout = math.ceil(timeout * 1e3) * 1e-3  # epoll counts milliseconds
        fd_to_key = self._fd_to_key
        try:
            # At least 1: epoll refuses 0, and the self-pipe's reader is removable.
            ready = _epoll_poll(self._selector, timeout, max(len(fd_to_key), 1))
        except InterruptedError:
            self.got_any = False
            return []
        self.got_any = bool(ready)
        events = []
        for fd, flags in ready:
            if fd == wake_fd:
                try:  # noqa: SIM105 - _read_wake_bytes, inline
                    self.wake_sock.recv(4096)  # type: ignore[union-attr]
                except (InterruptedError, BlockingIOError):
                    pass
                continue
            key = fd_to_key.get(fd)
            if key is not None:
                mask = 0
                if flags & ~_EPOLLIN:
                    mask |= selectors.EVENT_WRITE
                if flags & ~_EPOLLOUT:
                    mask |= selectors.EVENT_READ
                events.append((key, mask & key.events))
        return events

    def _read_wake_bytes(self) -> None:
        try:  # noqa: SIM105 - contextlib.suppress is three Python calls more per wake-up
            self.wake_sock.recv(4096)  # type: ignore[union-attr]
        except (InterruptedError, BlockingIOError):
            pass

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        w = self.worker
        if w is None:
            return _base_select(self, timeout)
        if timeout != 0:
            return w.select_idle(self, timeout)
        if w._deferred:
            w.flush_wakes()
        # The loop has callbacks ready: it is busy. This runs once per loop iteration,
        # so it does as little as it can: let woken workers and other busy ones have
        # the GIL now and then, and notice posted work.
        if w._woken:
            w._settle()
        if w._share:
            now = w.last_select = _perf_counter()
            if now - w._busy_since >= SHARE_EVERY:
                w._share_gil(now)
            elif now >= w._sysmon.due:
                w._yield_to_sysmon()
        w.selects += 1
        # A busy loop whose only file is its self-pipe has nothing to poll for: a
        # callback posted with call_soon_threadsafe is on the ready queue already, and
        # gorun writes the wake-up byte only to a parked worker. Skipping the poll saves
        # a system call and a release of the GIL per iteration (the largest reason why
        # a hand-off between goroutines on one gorun loop costs less than on a stock
        # loop). The bytes it leaves in the pipe are read at the next idle select. A
        # loop that watches a socket or handles signals polls every time, as asyncio
        # does.
        events = _base_select(self, 0) if len(self._fd_to_key) > 1 or self.signals else []
        if w.inbox:
            w._drain_inbox()
        if w.runq or w.runnext is not None:
            w.schedule_tick()
        return events


_Ts = TypeVarTuple("_Ts")
_Handle = asyncio.Handle
_new_handle = object.__new__
_base_call_soon = asyncio.SelectorEventLoop.call_soon


class WorkerLoop(asyncio.SelectorEventLoop):
    """The stdlib selector loop that gorun's workers run, with a leaner ``call_soon``.

    Every task step and every resolved future goes through ``call_soon``, with a
    context. Outside debug mode asyncio's version checks that the loop is open and makes
    and queues a Handle, through three more Python calls (``Handle.__init__`` among
    them); this one queues the Handle itself, and fills in its fields without calling
    its ``__init__``. Each of the two saves about a thirtieth of the instructions of a
    same-loop round trip between goroutines. A closed loop, debug mode or a call
    without a context takes asyncio's own path, with its errors and checks.
    """

    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if self._closed or self._debug or context is None:  # type: ignore[attr-defined]
            return _base_call_soon(self, callback, *args, context=context)
        # Handle(callback, args, self, context), without its Python-level __init__:
        # the fields it sets outside debug mode when given a context.
        handle: Any = _new_handle(_Handle)
        handle._callback = callback
        handle._args = args
        handle._loop = self
        handle._context = context
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle  # type: ignore[no-any-return]


class Worker:
    """One event loop on one OS thread, with its run queues; see the module docstring."""

    def __init__(self, runtime: Runtime, index: int, kind: str) -> None:
        self.runtime = runtime
        self.index = index
        self.kind = kind
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by attach
        self.thread: threading.Thread | None = None
        self.thread_id: int | None = None
        self.lock = threading.Lock()
        # Guarded by self.lock.
        self.runq: deque[Goroutine[Any]] = deque()
        self.runnext: Goroutine[Any] | None = None
        self.inbox: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self.parked = False
        self.notified = False
        self.closed = False
        self.wakeups = 0
        # Bumped each time the worker is about to select; a worker that woke this one
        # watches it to see it get the GIL and come back (see _settle).
        self.selects = 0
        # Owned by the worker's own thread (others read them only as hints or for stats).
        # Goroutines started here, and those of them that have finished (counters, not
        # a set: the runtime's registry has the goroutines themselves, and one more
        # dict entry per goroutine would cost a parked goroutine tens of bytes).
        self.started = 0
        self.finished = 0
        self.stolen = 0
        self.last_tick = 0.0
        self._tick_scheduled = False
        # How many goroutines a tick starts (see tick); reset to 1 whenever it parks.
        self._batch = 1
        self._started_last = 0
        # Workers this one woke that may still be waiting for the GIL (see _settle).
        self._woken: list[tuple[Worker, int, int]] = []
        self._quiet = False  # see select_idle and _deadlock.watch
        # Workers this one must wake at its next select (see post()).
        self._deferred: list[Worker] = []
        self._deferred_since = 0.0
        self._defer_wakes = False  # set by attach() for stdlib loops on a GIL build
        self._busy_since = 0.0
        # When this worker's loop last came back from select (kept with the GIL and
        # other workers only: it is what thieves look at, see Runtime.steal_into).
        self.last_select = 0.0
        # Whether busy selects must share the GIL (set by the runtime once it knows procs).
        self._share = GIL_ENABLED and runtime.procs > 1
        self._sysmon = runtime.sysmon
        self._max_batch = MAX_BATCH if runtime.procs == 1 else 1  # see tick
        # Guarded by runtime.lock: this worker was woken to look for work to steal.
        self.spinning = False
        #: The runtime's other workers (set by the runtime once it made them all).
        self.others: tuple[Worker, ...] = ()
        self._wake_fn: Callable[[], object] = _noop

    # -- set-up -------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind this worker to *loop*, which must run on the thread that runs the worker."""
        self.loop = loop
        loop._gorun_worker = self  # type: ignore[attr-defined]
        selector = getattr(loop, "_selector", None)
        if isinstance(selector, ParkingSelector):
            selector.worker = self
            signals = getattr(loop, "_signal_handlers", None)
            if signals is not None:
                selector.signals = signals
            wake_sock = getattr(loop, "_ssock", None)
            if isinstance(wake_sock, socket.socket):
                selector.wake_sock = wake_sock
                selector.wake_fd = wake_sock.fileno()
            csock = getattr(loop, "_csock", None)
            if isinstance(csock, socket.socket):
                # asyncio's _write_to_self() without its Python frame: the same send,
                # whose OSError (loop closed, pipe full) wake_now() ignores as it does.
                self._wake_fn = functools.partial(csock.send, b"\0")
            else:
                self._wake_fn = loop._write_to_self  # type: ignore[attr-defined]
            self.kind = "asyncio"
            self._defer_wakes = GIL_ENABLED
        else:
            self._wake_fn = self._wake_by_callback

    def wake_now(self) -> None:
        """Write this worker's wake-up now (any thread)."""
        try:  # noqa: SIM105 - contextlib.suppress costs three Python calls more
            self._wake_fn()
        except OSError:
            # The loop is closed (nothing left to wake), or its self-pipe is full: then
            # it is readable already, and the loop's select returns anyway.
            pass

    def _wake_by_callback(self) -> None:
        with contextlib.suppress(RuntimeError):  # closed under us: nothing left to wake
            self.loop.call_soon_threadsafe(self.tick)

    @property
    def kind(self) -> str:
        """The kind of loop: ``"asyncio"`` (a selector loop gorun parks in) or ``"uvloop"``."""
        return self._kind

    @kind.setter
    def kind(self, value: str) -> None:
        self._kind = value
        # A plain attribute, not a property: it is read several times per message.
        self.parks_in_selector = value == "asyncio"

    # -- queues -----------------------------------------------------------------------------

    def has_queued(self) -> bool:
        """True if the queues hold anything (an unlocked hint; re-checked under the lock)."""
        return bool(self.inbox or self.runq or self.runnext is not None)

    def push_local(self, g: Goroutine[Any]) -> None:
        """Queue *g*, spawned on this worker's own thread, in the ``runnext`` slot."""
        g._queued_at = _perf_counter()
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
        if not self._tick_scheduled:  # schedule_tick(), inlined: this runs per spawn
            self._tick_scheduled = True
            self.loop.call_soon(self.tick)
        # No idle worker is woken here: this worker usually gets to its queue within
        # microseconds, and a thief woken now would split a goroutine from the partner
        # it was spawned with. If this loop stays busy, its next tick (or the monitor,
        # for a loop stuck in one callback) wakes an idle worker to take the rest. A
        # lone worker has no monitor.
        runtime = self.runtime
        if runtime.sysmon.idle and runtime.procs > 1:
            runtime.sysmon.poke()

    def push_remote(self, g: Goroutine[Any]) -> bool:
        """Queue *g* from another thread; return False if this worker no longer runs."""
        g._queued_at = _perf_counter()
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
            _owe(self)
        else:
            runtime = self.runtime
            runtime.wake_idle()
            if runtime.sysmon.idle and runtime.procs > 1:
                runtime.sysmon.poke()
        return True

    def post(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on this worker's loop soon, from any thread.

        Returns False if the worker has shut down, in which case nothing will run.
        """
        # This runs once per message between workers: current_worker() and the lock's
        # `with` are inlined (a Python call or two less each).
        me: Worker | None = _tls.worker
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
        lock.acquire()
        try:
            if self.closed:
                return False
            self.inbox.append(item)
            # _claim_wake(), inline.
            if self.notified or (self.parks_in_selector and not self.parked):
                return True
            self.notified = True
            self.wakeups += 1
        finally:
            lock.release()
        if me is not None and me._defer_wakes:
            me.defer_wake(self)
        else:
            self.wake_now()
            _owe(self)
        return True

    def defer_wake(self, target: Worker) -> None:
        """Wake *target* when this worker's loop next selects, not now (own thread).

        With the GIL, a worker woken now would only wait for the GIL, which this thread
        holds until its loop selects: it would wake twice (from its selector, then from
        the GIL wait) where once will do, and the second wake costs as much as the
        first. Deferred to the select, the wake-up lands when the GIL is about to be
        free. A callback that runs on for long after posting would hold the wake-up
        back; the monitor thread sends any that waited past DEFER_LIMIT.
        """
        if not self._deferred:
            self._deferred_since = _perf_counter()
            sysmon = self.runtime.sysmon
            if sysmon.idle:
                sysmon.poke()
        self._deferred.append(target)

    def flush_wakes(self) -> None:
        """Write the wake-ups this worker deferred (own thread: busy select, loop stop).

        The woken workers are remembered for the hand-over (see _settle). A worker about
        to park flushes inline instead (select_idle), without that: its select gives up
        the GIL anyway.
        """
        deferred = self._deferred
        self._deferred = []
        for w in deferred:
            w.wake_now()
            # _owe(w), inlined: only stdlib workers on a GIL build defer their wake-ups
            if w.parks_in_selector and w is not self:
                self._woken.append((w, w.selects, 0))

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
        _owe(self)
        return True

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

    # -- the worker's own thread ------------------------------------------------------------

    def schedule_tick(self) -> None:
        """Make sure a tick runs on this loop soon (owner thread only)."""
        if not self._tick_scheduled:
            self._tick_scheduled = True
            self.loop.call_soon(self.tick)

    def select_idle(
        self, selector: ParkingSelector, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """The loop's select when it has nothing ready: steal, park, and unpark."""
        # The loop has nothing ready: this worker is idle. Steal, or park. (This runs
        # once per message between two workers: the lock is taken inline, and the
        # helpers it calls return early in the common case.)
        self._batch = 1  # see __init__
        runtime = self.runtime
        # Steal only if another worker has goroutines queued. Between workers that pass
        # messages (or in an idle program) none has: this test is all that runs.
        retry: float | None = None
        for w in self.others:
            if w.runq or w.runnext is not None:
                retry = runtime.steal_into(self)
                break
        else:
            if self.spinning:
                runtime.stop_spinning(self)
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
                    # Cleared here, under the lock, as well as at the unpark below, which
                    # does without it: a poster that saw this worker parked just before
                    # that unpark may have set it since (and written a wake-up byte,
                    # which the next select reads). Left set, it would keep the next
                    # poster from waking this worker.
                    self.notified = False
            finally:
                lock.release()
            if timeout != 0 and retry is not None and (timeout is None or retry < timeout):
                timeout = retry
        if timeout is None and self.parked and runtime.detect_deadlocks:
            # The watch matters only to the last worker to park. Between workers that
            # pass messages, the other one is usually running or woken: that test first,
            # inline (what watch() would conclude, and forget, in that case).
            for w in self.others:
                if not w.parked or w.notified:
                    runtime._watch = None
                    break
            else:
                timeout = _deadlock_watch(self)
        if self.inbox:
            timeout = 0  # posted meanwhile: the drain below runs it
        if self.runq or self.runnext is not None:
            self.schedule_tick()
            timeout = 0
        # Wake-ups held back (see defer_wake) go out last, as close as can be to the
        # select that releases the GIL: a worker woken earlier would wake only to wait
        # for the GIL while this one still steals, parks and watches.
        # (flush_wakes(), inline, without recording the woken for _settle.)
        deferred = self._deferred
        if deferred:
            self._deferred = []
            for w in deferred:
                try:  # noqa: SIM105 - w.wake_now(), inline
                    w._wake_fn()
                except OSError:
                    pass
        if self._woken:
            self._woken.clear()  # about to park, which releases the GIL anyway
        self.selects += 1
        try:
            return selector.select_parked(timeout)
        finally:
            # Busy from now on: the time spent waiting for the GIL to come back after
            # the select does not count (see _share_gil).
            self._busy_since = self.last_select = _perf_counter()
            # Nothing happened here during that select (for the deadlock watch).
            self._quiet = not selector.got_any and not self.inbox
            if self.parked:
                # Awake, without the lock: a poster that still sees this worker parked
                # writes a wake-up byte it did not need to (the next select reads it),
                # and one that sees it awake adds to the inbox, which is drained below or
                # looked at under the lock before the next park. In between, parked is
                # False and notified True: awake to anyone who looks, the deadlock watch
                # included. (Park clears notified again, under the lock.)
                self.parked = False
                self.notified = False
            # Posted callbacks (mostly: resolve the future of a goroutine that another
            # thread handed a value to) run right here, so the callbacks they schedule
            # (that goroutine's next step) run in this same loop iteration, not one
            # call_soon hop later.
            if self.inbox:
                self._drain_inbox()
            if self.runq or self.runnext is not None:
                self.schedule_tick()

    def _share_gil(self, now: float) -> None:
        # The same starvation in steady state: a worker that stays busy drops the GIL
        # only for select(0) and takes it straight back, so other busy workers (and
        # those just woken) may wait far longer than the interpreter's switch interval.
        # Every SHARE_EVERY of continuous work, if another worker is awake, sleep
        # briefly so that it gets the GIL.
        self._busy_since = now
        for w in self.runtime.workers:
            awake = not w.parked or w.notified  # running, or woken and not running yet
            if w is not self and awake and w.thread_id is not None and not w.closed:
                _nap(SHARE_FOR)
                self._busy_since = _perf_counter()
                return

    def _yield_to_sysmon(self) -> None:
        # The monitor thread's sleep is over and it wants the GIL. A busy loop releases
        # the GIL only for its select(0) calls and takes it straight back: each release
        # wakes the monitor, which finds the GIL taken again and goes back to wait, a
        # futile context switch per loop iteration until the switch interval (5 ms)
        # forces a hand-over. Napping once lets it take the GIL now. Another busy
        # worker may take it instead; the monitor's time is then pushed back, so that
        # this loop naps at most once per SYSMON_YIELD.
        self._sysmon.due = _perf_counter() + SYSMON_YIELD
        _nap(SHARE_FOR)

    def _settle(self) -> None:
        # With the GIL, a worker woken from select() must take the GIL to run; a busy
        # loop that drops the GIL only for its own select(0) calls takes it straight
        # back, and the woken thread can starve for hundreds of milliseconds (its forced
        # switch request is reset every time the GIL changes hands). So before its next
        # select, a worker that woke others waits, GIL released, until each has done
        # the work it was woken for and come back to its own select (at most
        # SETTLE_TIMEOUT in all).
        # A worker that does not show up in time (its thread not scheduled yet, on a
        # loaded machine) stays owed, for a few more tries at the next selects.
        woken = self._woken
        self._woken = []
        deadline = _perf_counter() + SETTLE_TIMEOUT
        for i, (w, seq, _tries) in enumerate(woken):
            while w.selects == seq and not w.closed:
                if _perf_counter() >= deadline:
                    self._woken = [
                        (w2, seq2, tries2 + 1)
                        for w2, seq2, tries2 in woken[i:]
                        if tries2 < SETTLE_TRIES and w2.selects == seq2
                    ]
                    return
                _nap(SETTLE_POLL)

    def tick(self) -> None:
        """Run posted callbacks, then start a batch of queued goroutines."""
        self._tick_scheduled = False
        now = _perf_counter()
        interval = now - self.last_tick
        self.last_tick = now
        parks = self.parks_in_selector
        if not parks:
            with self.lock:
                self.notified = False
                self.parked = False
        if self.inbox:
            self._drain_inbox()
        runtime = self.runtime
        # How many to start. A goroutine started here can never move: if it blocks this
        # thread, the ones started with it wait too, while those left queued can still
        # be stolen. So with other workers a tick starts one (even a worker that is busy
        # now may be idle by the time this one blocks; a batch of up to 8 was tried, and
        # pinned two goroutines that block behind each other). A lone worker has nobody
        # to hand work to: its batch grows (doubling) while the last one ran quickly,
        # less than FAST_TICK per goroutine between ticks, which also bounds how long
        # started goroutines hold up I/O on this loop; a slow tick resets it to 1. Only
        # a full batch that ran quickly doubles it: an empty tick proves nothing.
        batch = self._batch
        if self._started_last == batch and interval < FAST_TICK * batch:
            batch = min(batch * 2, self._max_batch)
        else:
            batch = 1
        self._batch = batch
        runq = self.runq
        # Made before taking the lock, which must not allocate an object the garbage
        # collector tracks: a finalizer run by a collection there could call go().
        taken: list[Goroutine[Any]] = []
        lock = self.lock
        lock.acquire()  # not `with`: see push_local
        try:
            g = self.runnext
            if g is not None:
                self.runnext = None
            elif runq:
                g = runq.popleft()
            while runq and len(taken) < batch - 1:
                taken.append(runq.popleft())
            more = runq or self.inbox
        finally:
            lock.release()
        if g is not None:
            g._start(self)
            self._started_last = 1 + len(taken)
        else:
            self._started_last = 0
        for g in taken:
            g._start(self)
        if more:
            if not self._tick_scheduled:
                self._tick_scheduled = True
                self.loop.call_soon(self.tick)
            if runtime.procs > 1 and (not GIL_ENABLED or interval > runtime.stuck_after):
                # Busy: wake an idle worker if the oldest goroutine still queued has
                # waited past the grace. With the GIL, only if this loop's last
                # iteration was long enough to count as stuck (see Runtime.steal_into):
                # a loop that iterates quickly serves its own queue best.
                try:
                    waited = now - runq[0]._queued_at
                except IndexError:
                    waited = 0.0
                if waited > runtime.steal_grace:
                    runtime.wake_idle()
        elif not parks:
            self._idle_without_selector()

    def _drain_inbox(self) -> None:
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

    def _idle_without_selector(self) -> None:
        # uvloop: there is no select() to hook, so a tick that found nothing to start is
        # where the worker counts itself idle and looks for work elsewhere.
        self._batch = 1  # see __init__
        retry = self.runtime.steal_into(self)
        if retry == 0.0:
            self.schedule_tick()
            return
        with self.lock:
            self.parked = not self.has_queued()
        if retry is not None:
            self.loop.call_later(retry, self.tick)

    def _callback_failed(self, fn: Callable[..., object], exc: BaseException) -> None:
        self.loop.call_exception_handler(
            {
                "message": f"Exception in callback {fn!r} posted to gorun worker {self.index}",
                "exception": exc,
            }
        )


def _deadlock_watch(worker: Worker) -> float | None:
    # Replaced by _deadlock.watch itself on first use (a function-level import per park
    # costs more than the watch's usual early return).
    global _deadlock_watch
    from ._deadlock import watch

    _deadlock_watch = watch
    return watch(worker)


def _noop() -> None:
    pass


def _owe(woken: Worker) -> None:
    # Record that this thread's worker woke *woken*; see Worker._settle.
    if not GIL_ENABLED or not woken.parks_in_selector:
        return
    me = current_worker()
    if me is not None and me is not woken and me.parks_in_selector:
        me._woken.append((woken, woken.selects, 0))
