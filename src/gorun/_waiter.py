"""Parking and waking one blocked operation, on any loop or plain thread.

A `Parker` is what a blocked goroutine (or plain thread) sleeps on: a future on
its own loop, or a ``threading.Event``. A `Waiter` is one queued operation that
wakes it: a plain ``send`` or ``recv`` has one waiter, a ``select`` one per case, all
sharing its parker.

Claiming is the commit point. Whoever claims a waiter first (a counterparty handing it
a value, ``close()``, a timeout, or the waiter's own cancellation) decides its outcome,
and everyone else must leave it alone. Claims are made under the lock of the primitive
that queues the waiter (a channel, a WaitGroup, a Mutex), and the parker's own lock makes
the claim exclusive across the several primitives a ``select`` waits on. Waking happens
after the primitive's lock is released: the future is resolved on its own loop (at once
when that is the calling thread's loop, else through the loop's coalesced wake-up).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

from ._runtime import call_in_loop
from ._worker import loop_here

_monotonic = time.monotonic

# The last wait's start time, shared by the waits that start within the same millisecond:
# a float is an object of 24 bytes, a tenth of the difference between a parked goroutine
# and a parked asyncio task. gorun.dump() shows waits to the millisecond anyway. A list
# of one, read and replaced whole: a race between threads only means a fresh float.
_since = [0.0]


def _wait_start() -> float:
    now = _monotonic()
    last = _since[0]
    if now - last < 1e-3:
        return last
    _since[0] = now
    return now


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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


class Parker:
    """What one blocked operation sleeps on, and who won it (see the module docstring)."""

    __slots__ = ("event", "fut", "lock", "loop", "since", "winner")

    def __init__(self, loop: asyncio.AbstractEventLoop | None, *, shared: bool = False) -> None:
        self.loop = loop
        self.since = _wait_start()  # when it started waiting (shown by gorun.dump())
        self.fut: asyncio.Future[None] | None = loop.create_future() if loop else None
        self.event: threading.Event | None = None if loop else threading.Event()
        # A parker queued on one primitive is only ever claimed under that primitive's
        # lock, which already makes claims exclusive. A select's parker is queued on
        # several channels (several locks), so it has a lock of its own.
        self.lock = threading.Lock() if shared else None
        # None while the operation is still waiting; then the Waiter that completed it,
        # or CANCELLED when the operation itself gave up (cancellation or timeout).
        self.winner: Any = None

    def claim(self, waiter: Any) -> bool:
        """Commit this parker to *waiter* (or ``CANCELLED``); False if already decided.

        Call with the lock of the primitive that queued it held.
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

    @property
    def decided(self) -> bool:
        return self.winner is not None

    def wake(self) -> None:
        """Wake the sleeper; call after releasing the primitive's lock."""
        if self.fut is not None:
            loop = self.loop
            assert loop is not None
            if loop_here() is loop:
                if not self.fut.done():
                    self.fut.set_result(None)
            else:
                call_in_loop(loop, _resolve, self.fut)
        else:
            assert self.event is not None
            self.event.set()

    async def sleep(self) -> None:
        """Wait until woken (a coroutine); CancelledError propagates to the caller."""
        assert self.fut is not None
        await self.fut

    def sleep_blocking(self, timeout: float | None) -> bool:
        """Block this plain thread until woken; False on timeout."""
        assert self.event is not None
        return self.event.wait(timeout)


#: A parker's winner when the operation itself gave up (cancellation or timeout).
CANCELLED = "cancelled"
#: A plain operation's winner once a counterparty (or close()) completed it. Not the
#: operation itself: an object that refers to itself is freed only by the garbage
#: collector, and a channel makes one per blocked send or receive.
TAKEN = "taken"


class Waiter:
    """One queued operation of a parker: which case it is, and what it carries."""

    __slots__ = ("case", "closed", "parker", "value")

    def __init__(self, parker: Parker, case: int = 0, value: Any = None) -> None:
        self.parker = parker
        self.case = case
        self.value = value  # the value to send, or the value received
        # True when close() completed it: a send raises Closed, a receive gets (None, False).
        self.closed = False

    def claim(self) -> bool:
        return self.parker.claim(self)

    def wake(self) -> None:
        """Wake the operation's sleeper (after releasing the primitive's lock)."""
        self.parker.wake()

    @property
    def stale(self) -> bool:
        """Decided already (another case of its select won, or it gave up)."""
        return self.parker.winner is not None


class Solo:
    """A parker that is its own (only) waiter: a plain ``send`` or ``recv``.

    One small object instead of a Parker and a Waiter, on the hottest path there is. It
    is only ever claimed under the lock of the one primitive that queued it.
    """

    __slots__ = ("closed", "event", "fut", "loop", "since", "value", "winner")

    case = 0

    def __init__(self, loop: asyncio.AbstractEventLoop | None, value: Any = None) -> None:
        self.loop = loop
        self.since = _wait_start()  # as for Parker
        if loop is not None:
            self.fut: asyncio.Future[None] | None = loop.create_future()
        else:
            self.fut = None
            self.event = threading.Event()
        self.winner: Any = None
        self.value = value
        self.closed = False  # as for Waiter

    def claim(self, waiter: Any = None) -> bool:
        if self.winner is not None:
            return False
        self.winner = TAKEN if waiter is None else waiter
        return True

    @property
    def stale(self) -> bool:
        return self.winner is not None

    def wake(self) -> None:
        fut = self.fut
        if fut is None:
            self.event.set()
        else:
            loop: Any = self.loop
            if loop_here() is loop:
                if not fut.done():
                    fut.set_result(None)
                return
            # call_in_loop(), with its gorun case inline: this is every hand-off between
            # two workers.
            worker = getattr(loop, "_gorun_worker", None)
            if worker is not None and worker.loop is loop:
                worker.post(_resolve, fut)
            else:
                call_in_loop(loop, _resolve, fut)

    def sleep_blocking(self, timeout: float | None) -> bool:
        return self.event.wait(timeout)


_new = object.__new__


def new_solo(loop: asyncio.AbstractEventLoop | None, value: Any) -> Solo:
    """``Solo(loop, value)`` at about half the cost (no Python-level ``__init__`` call).

    For the channel's hot paths, where *loop* is `loop_here()`; the fields set here
    must match ``Solo.__init__``.

    Raises:
        RuntimeError: *loop* is None: the await runs outside an event loop.
    """
    if loop is None:
        raise RuntimeError("no running event loop")
    op: Solo = _new(Solo)
    op.loop = loop
    op.fut = loop.create_future()
    op.winner = None
    op.value = value
    op.closed = False
    now = _monotonic()  # _wait_start(), inlined: this is the channel's hot path
    last = _since[0]
    if now - last < 1e-3:
        op.since = last
    else:
        op.since = _since[0] = now
    return op


#: What a primitive's wait queue holds: a select's per-case waiter, or a plain operation.
Queued = Waiter | Solo


def rearm_cancel(msg: Any = None) -> None:
    """The operation completed although its await was cancelled: deliver the cancel later.

    A cancellation that loses the race with a hand-off must not undo the hand-off (the
    value is delivered, or received, once), and it must not be lost either. This makes
    the current task raise CancelledError at its next await, as asyncio does when a
    future completes before the task's cancel() reaches it.
    """
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
        task.cancel(msg)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
