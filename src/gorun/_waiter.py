"""Parking and waking one blocked operation, on any loop or plain thread.

A blocked goroutine sleeps on a future of its own loop, held by a `Blocking` object that
also says what it waits for. A plain ``send`` (or a Mutex acquire, a WaitGroup wait)
queues one `Solo`, which is both the sleeper and the queued operation (a ``recv``, the
smaller ``_chan_wait.ChanRecv``); a ``select`` queues one `Waiter` per case, all sharing
one `Parker`. A plain thread sleeps
on a `ThreadSolo`, whose ``threading.Event`` stands in for the future.

Claiming is the commit point. Whoever claims a waiter first (a counterparty handing it
a value, ``close()``, a timeout, or the waiter's own cancellation) decides its outcome,
and everyone else must leave it alone. Claims are made under the lock of the primitive
that queues the waiter (a channel, a WaitGroup, a Mutex), and the parker's own lock makes
the claim exclusive across the several primitives a ``select`` waits on. Waking happens
after the primitive's lock is released: the future is resolved on its own loop (at once
when that is the calling thread's loop, else through the loop's coalesced wake-up).

**The blocking-point protocol.** ``gorun.dump()`` and deadlock detection learn what a
goroutine waits for from the `Blocking` object that holds the future its Task awaits:
it carries ``what`` (the label the dump prints, such as ``"chan receive"``), ``owner``
(the primitive, whose repr the dump prints; `Blocking.blocked_on`, given the frame the
waiter was found in, may say more or find it there) and ``since``. Every gorun blocking
operation sleeps on one, and nothing else is needed for the dump to show it. (The
future is a plain ``asyncio.Future``, not a subclass that could carry all this itself: a
Task awaits an exact Future through C fast paths, a subclass through Python calls, about
a seventh more instructions per same-loop hand-off.)
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from types import FrameType
from typing import Any, ClassVar

from ._compat import current_task_on
from ._thread_state import running_loop
from ._wakeup import call_in_loop

_monotonic = time.monotonic
_current_task = asyncio.current_task

# The last wait's start time, shared by the waits that start within the same millisecond:
# a float is an object of 24 bytes, a tenth of the difference between a parked goroutine
# and a parked asyncio task. gorun.dump() shows waits to the millisecond anyway. A list
# of one, read and replaced whole: a race between threads only means a fresh float.
_since = [0.0]


def wait_start() -> float:
    """``time.monotonic()`` now, shared with the waits of the last millisecond."""
    now = _monotonic()
    last = _since[0]
    if now - last < 1e-3:
        return last
    _since[0] = now
    return now


class _Mark:
    # The marks below: objects of their own, never strings, since a receive's value slot
    # holds its mark and its value (_chan_wait.ChanRecv): an interned "taken" could be sent.
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: A waiter's winner when the operation itself gave up (cancellation or timeout).
CANCELLED: Any = _Mark("CANCELLED")
#: A timed operation's winner when its timeout expired first.
TIMED_OUT: Any = _Mark("TIMED_OUT")
#: A plain operation's winner once a counterparty (or close()) completed it. Not the
#: operation itself: an object that refers to itself is freed only by the garbage
#: collector, and a channel makes one per blocked send or receive.
TAKEN: Any = _Mark("TAKEN")
#: The value of a queued channel operation that close() completed: a send raises Closed,
#: a receive gets ``(None, False)``. In the value's own slot (a value nobody can send),
#: not a flag beside it: a slot less in every blocked send and receive.
CLOSED: Any = _Mark("CLOSED")


class Blocking:
    """What a blocked goroutine sleeps on: its future, and what it waits for.

    The blocking-point protocol (see the module docstring): ``fut`` is the future the
    goroutine's Task awaits, ``what`` the label ``gorun.dump()`` prints, ``owner`` the
    primitive waited on, ``since`` the ``time.monotonic()`` when the wait began. Only gorun
    can end such a wait (no timer, I/O or thread), which deadlock detection relies on.
    """

    # Only ``fut`` is a slot here: the others are slots of each subclass, or what a
    # subclass derives them from (a channel receive's ChanRecv, in ``_chan_wait``, keeps
    # two slots in all): a slot is 8 bytes of every parked goroutine.
    __slots__ = ("fut",)

    fut: asyncio.Future[Any]
    what: str
    owner: object
    since: float | None

    def blocked_on(self, frame: FrameType) -> str:
        """What the dump prints after the label: by default, the owner's repr. *frame*
        is the frame the dump found this waiter in."""
        return repr(self.owner)

    def wake(self) -> None:
        """Resolve the future on its own loop; call after releasing the primitive's lock."""
        fut = self.fut
        loop: Any = fut.get_loop()
        if running_loop() is loop:
            if not fut.done():
                fut.set_result(None)
            return
        # call_in_loop(), with its gorun-worker case inline: this is every hand-off
        # between two workers (tests/test_copies.py drives both).
        worker = getattr(loop, "_gorun_worker", None)
        if worker is not None and worker.loop is loop:
            worker.post(_resolve, fut)
        else:
            call_in_loop(loop, _resolve, fut)

    #: A waiter is its own wake-up callback (a goroutine's done callbacks): no bound
    #: method to allocate per wait.
    __call__ = wake


class _Claim:
    # claim() and stale for an operation that is its own only waiter (Solo, ThreadSolo).
    __slots__ = ()
    winner: Any

    def claim(self, waiter: Any = None) -> bool:
        """Decide this operation (for *waiter*, or TAKEN); False if already decided.

        Call with the lock of the primitive that queued it held.
        """
        if self.winner is not None:
            return False
        self.winner = TAKEN if waiter is None else waiter
        return True

    @property
    def stale(self) -> bool:
        """Decided already (completed, or it gave up)."""
        return self.winner is not None


class Solo(_Claim, Blocking):
    """A plain operation of a goroutine: the future it sleeps on and its only waiter.

    One object per blocked ``send``, ``recv``, Mutex acquire or WaitGroup wait, the
    hottest path there is. It is only ever claimed under the lock of the one primitive
    that queued it. Made by `new_solo` only.
    """

    __slots__ = ("owner", "since", "value", "what", "winner")

    case: ClassVar[int] = 0  # as a select's Waiter, for code that handles both
    value: Any  # the value to send, the value received, or CLOSED
    winner: Any


class Described(Blocking):
    """A `Blocking` that only describes a wait on a future something else resolves."""

    __slots__ = ("owner", "since", "what")


_new = object.__new__


def new_blocking(fut: asyncio.Future[Any], what: str, owner: object) -> Blocking:
    """A `Blocking` that only describes a wait on *fut* (which something else resolves).

    Its start time is its own float (not wait_start()'s shared one): such a waiter lives
    only while its wait does, and costs a Python call less.
    """
    waiter: Described = _new(Described)
    waiter.fut = fut
    waiter.what = what
    waiter.owner = owner
    waiter.since = _monotonic()
    return waiter


def new_solo(
    loop: asyncio.AbstractEventLoop | None, owner: object, what: str, value: Any = None
) -> Solo:
    """A `Solo` on *loop* carrying *value*, waiting for *what* on *owner*.

    Raises:
        RuntimeError: *loop* is None: the await runs outside an event loop.
    """
    if loop is None:
        raise RuntimeError("no running event loop")
    op: Solo = _new(Solo)  # no Python-level __init__: a call less on the hottest path
    op.fut = loop.create_future()
    op.winner = None
    op.value = value
    op.what = what
    op.owner = owner
    now = _monotonic()  # wait_start(), inline: this is the channel's hot path
    last = _since[0]  # (tests/test_copies.py drives both)
    if now - last < 1e-3:
        op.since = last
    else:
        op.since = _since[0] = now
    return op


class ThreadSolo(_Claim):
    """A plain operation of a plain thread (the ``_blocking`` methods): a Solo whose
    sleeper is a ``threading.Event``."""

    __slots__ = ("event", "value", "winner")

    case: ClassVar[int] = 0

    def __init__(self, value: Any = None) -> None:
        self.event = threading.Event()
        self.winner: Any = None
        self.value = value  # as a Solo's: the value to send, the value received, or CLOSED

    def wake(self) -> None:
        """Wake the sleeping thread; call after releasing the primitive's lock."""
        self.event.set()

    def sleep_blocking(self, timeout: float | None) -> bool:
        """Block until woken; False on timeout."""
        return self.event.wait(timeout)


class Parker(Blocking):
    """The future several waiters share (a ``select``'s cases), and who won it.

    Its winner is None while the operation still waits; then the `Waiter` that completed
    it, or CANCELLED when the operation itself gave up (cancellation or timeout).
    """

    __slots__ = ("lock", "owner", "since", "what", "winner")

    lock: threading.Lock | None
    winner: Any

    def claim(self, waiter: Any) -> bool:
        """Commit this parker to *waiter* (or ``CANCELLED``); False if already decided.

        Call with the lock of the primitive that queued *waiter* held. A parker queued on
        several primitives (several locks) has a lock of its own that makes the claim
        exclusive.
        """
        lock = self.lock
        if lock is None:
            if self.winner is not None:
                return False
            self.winner = waiter
            return True
        with lock:
            if self.winner is not None:
                return False
            self.winner = waiter
            return True


def new_parker(
    cls: type[Parker], loop: asyncio.AbstractEventLoop, what: str, owner: object, *,
    shared: bool = False,
) -> Parker:
    """A parker of class *cls* on *loop*; *shared* gives it its own lock (see claim)."""
    parker = _new(cls)
    parker.fut = loop.create_future()
    parker.lock = threading.Lock() if shared else None
    parker.winner = None
    parker.what = what
    parker.owner = owner
    parker.since = wait_start()
    return parker


class Waiter:
    """One queued case of a parker: which case it is, and what it carries."""

    __slots__ = ("case", "parker", "value")

    def __init__(self, parker: Parker, case: int = 0, value: Any = None) -> None:
        self.parker = parker
        self.case = case
        self.value = value  # the value to send, the value received, or CLOSED

    def claim(self) -> bool:
        """Commit its parker to this case; False if the parker was decided already."""
        return self.parker.claim(self)

    def wake(self) -> None:
        """Wake the operation's sleeper (after releasing the primitive's lock)."""
        self.parker.wake()

    @property
    def stale(self) -> bool:
        """Decided already (another case of its select won, or it gave up)."""
        return self.parker.winner is not None


# -- plain threads ----------------------------------------------------------------------------


def check_blocking_allowed(what: str) -> None:
    """Raise RuntimeError if a blocking call would freeze this thread's event loop."""
    if running_loop() is not None:
        raise RuntimeError(
            f"{what} would block the event loop running on this thread; "
            "use the awaitable form instead"
        )
    note_plain_thread()


# Plain threads (no event loop) that have used a gorun primitive. While one of them is
# alive it may use one again and wake a goroutine, so no deadlock is declared.
_plain_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_plain_lock = threading.Lock()


def note_plain_thread() -> None:
    """Record that the calling plain thread uses gorun primitives (see plain_threads)."""
    thread = threading.current_thread()
    if thread not in _plain_threads:
        with _plain_lock:
            _plain_threads.add(thread)


def plain_threads() -> list[threading.Thread]:
    """The live plain threads that have used a gorun primitive."""
    with _plain_lock:
        for _ in range(10):  # the garbage collector may drop an entry while we copy
            try:
                threads = list(_plain_threads)
                break
            except RuntimeError:
                continue
        else:
            return []
    return [t for t in threads if t.is_alive()]


def cancel_count(loop: asyncio.AbstractEventLoop) -> int:
    """How many cancellations of the task running on *loop* are pending (its
    ``cancelling()``).

    Read it before a wait whose operation a counterparty may complete, and pass it to
    `complete_cancelled` if the await is cancelled after all.
    """
    task = current_task_on(loop)
    return 0 if task is None else task.cancelling()


def complete_cancelled(base: int, exc: asyncio.CancelledError) -> None:
    """The operation took effect although its await was cancelled: let it complete.

    A counterparty committed the operation (a receiver has the value) before the
    cancellation reached the task, so it cannot be undone, and reporting it as cancelled
    would be a lie that makes a caller send the value twice. The caller returns normally
    instead, and the cancellation is not lost: once the task is suspended again,
    `_redeliver` looks whether it is still pending (the task's ``cancelling()`` above
    *base*, the count before the wait). If it is, the task is cancelled again, at its
    next await, so a task cancelled by its owner or its group still stops. If an
    ``asyncio.timeout()`` block (``wait_for`` from 3.12) around the operation absorbed
    it, nothing is raised: the block ended normally, with the operation done, and
    nothing is left behind to kill the task later.
    """
    task = _current_task()
    if task is not None:
        task.get_loop().call_soon(_redeliver, task, base, exc.args[0] if exc.args else None)


def _redeliver(task: asyncio.Task[Any], base: int, msg: Any) -> None:
    if task.done() or task.cancelling() <= base:
        return
    task.uncancel()  # the same request, delivered again: keep the count as it is
    task.cancel(msg)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
