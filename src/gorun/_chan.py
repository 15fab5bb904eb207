"""Go-style channels that work across worker loops, foreign loops and plain threads.

State, all guarded by ``self._lock`` (a ``threading.Lock``, since the two ends of a
channel may run on different threads):

* ``_buf``: buffered values, at most ``cap`` of them;
* ``_recvq``: parked receivers; only when ``_buf`` is empty;
* ``_sendq``: parked senders, each carrying its value; only when ``_buf`` is full;
* ``_closed``: set once by ``close()``, never cleared.

Queued waiters may be stale (a ``select`` that another case already won, or an operation
that gave up); they are skipped and dropped when found. A waiter is claimed under the
lock before it is woken, so exactly one party decides each operation (see ``_waiter``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from ._chan_wait import ChanRecv, Waiting, cancel_recv, cancel_send, new_recv, wait_timed
from ._compat import current_task_on
from ._config import check_seconds
from ._thread_state import running_loop
from ._waiter import (
    CLOSED,
    TAKEN,
    Solo,
    ThreadSolo,
    check_blocking_allowed,
    new_solo,
    note_plain_thread,
)
from ._waitq import Queued, has_live, pop_live, sleep_blocking_queued

T = TypeVar("T")
R = TypeVar("R")


class Closed(Exception):
    """Raised by ``send`` on a closed channel, by ``recv`` once it is closed and drained,
    and by a second ``close()``."""


class WouldBlock(Exception):
    """Raised by ``send_nowait`` / ``recv_nowait`` when the operation would have to wait."""


def _check_cap(cap: object) -> int:
    if isinstance(cap, bool) or not isinstance(cap, int):
        raise TypeError(f"Chan cap must be an int, got {type(cap).__name__} {cap!r}")
    if cap < 0:
        raise ValueError(f"Chan cap must be 0 (unbuffered) or more (buffered), got {cap}")
    return cap


def _took(got: tuple[Any, bool, Queued | None]) -> Any:
    # What _try_recv took, (value, ok, sender to wake), as a receive returns it: the value,
    # or Closed.
    value, ok, sender = got
    if sender is not None:
        sender.wake()
    if not ok:
        raise Closed("recv on closed channel")
    return value


def _at_once(what: str, nowait: Callable[..., R], *args: Any) -> R:
    # An operation with timeout=0: its _nowait form, with TimeoutError for WouldBlock.
    try:
        return nowait(*args)
    except WouldBlock:
        raise TimeoutError(f"{what} would block, and its timeout is 0") from None


class Chan(Generic[T]):
    """A channel: goroutines (and plain threads) pass values through it, in order.

    ``Chan(0)`` (the default) is unbuffered: ``send`` waits until a receiver has taken
    the value. ``Chan(n)`` buffers up to *n* values: ``send`` waits only when it is full.
    Every operation is safe from any worker loop, any other asyncio loop, and (with the
    ``_blocking`` methods) any plain thread.

    Args:
        cap: The buffer size, 0 or more.
    """

    __slots__ = ("__weakref__", "_buf", "_cap", "_closed", "_lock", "_recvq", "_sendq")

    def __init__(self, cap: int = 0) -> None:
        self._cap = _check_cap(cap)
        self._lock = threading.Lock()
        self._buf: deque[T] = deque()
        self._recvq: deque[Queued] = deque()
        self._sendq: deque[Queued] = deque()
        self._closed = False

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Chan cap={self._cap} len={len(self._buf)}{state} at {id(self):#x}>"

    @property
    def cap(self) -> int:
        """The buffer size (0 for an unbuffered channel)."""
        return self._cap

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    def __len__(self) -> int:
        """The number of values buffered now."""
        return len(self._buf)

    # -- the non-blocking core, called with self._lock held ------------------------------

    def _try_send(self, value: T) -> Queued | bool:
        """Send without waiting. Returns the receiver to wake, True if buffered,
        False if it would block. Raises Closed."""
        if self._closed:
            raise Closed("send on closed channel")
        w: Queued | None = pop_live(self._recvq)
        if w is not None:
            w.value = value
            return w
        if len(self._buf) < self._cap:
            self._buf.append(value)
            return True
        return False

    def _try_recv(self) -> tuple[Any, bool, Queued | None] | None:
        """Receive without waiting: (value, ok, sender to wake) or None if it would block."""
        if self._buf:
            value = self._buf.popleft()
            w = None
            if len(self._buf) < self._cap:  # a parked sender's value takes the freed slot
                w = pop_live(self._sendq)
                if w is not None:
                    self._buf.append(w.value)
            return value, True, w
        w = pop_live(self._sendq)
        if w is not None:
            return w.value, True, w
        if self._closed:
            return None, False, None
        return None

    def _send_ready(self) -> bool:
        return self._closed or has_live(self._recvq) or len(self._buf) < self._cap

    def _recv_ready(self) -> bool:
        return bool(self._buf) or self._closed or has_live(self._sendq)

    # -- send ---------------------------------------------------------------------------

    def send_nowait(self, value: T) -> None:
        """Send *value* if that needs no waiting, else raise [`WouldBlock`][gorun.WouldBlock].

        Raises:
            Closed: the channel is closed.
            WouldBlock: no receiver is waiting and the buffer is full.
        """
        if running_loop() is None:
            note_plain_thread()
        with self._lock:
            got = self._try_send(value)
        if got is False:
            raise WouldBlock("send would block: no receiver waiting and the buffer is full")
        if got is not True:
            got.wake()

    # A timeout argument (ruff's ASYNC109 prefers asyncio.timeout() around the call): it
    # decides between the operation and its timeout under the channel's lock, exactly.
    async def send(self, value: T, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Send *value*, waiting for a receiver (unbuffered) or for buffer space.

        It either happens or raises, never both. Cancelled before a receiver took the
        value, it sent nothing and raises CancelledError. Cancelled as a receiver took
        it, it was sent and returns; the cancellation comes at the task's next
        ``await``, unless a timeout block around the send absorbed it.

        Args:
            timeout: Seconds to wait at most (None: as long as it takes). Exactly one of
                the send and the timeout wins, as in a ``select`` with a timer case.

        Raises:
            Closed: the channel is closed, or is closed while this send waits.
            TimeoutError: *timeout* passed before a receiver or buffer space came.
            TypeError, ValueError: *timeout* is not a number of seconds, 0 or more.
        """
        if timeout is not None:
            timeout = check_seconds(timeout, "send() timeout")
            if timeout == 0:
                return _at_once("send", self.send_nowait, value)
        # Hot: _try_send inlined (see test_copies), no `with` (2x on 3.11), few names.
        self._lock.acquire()
        try:
            if self._closed:
                raise Closed("send on closed channel")
            while self._recvq:
                receiver = self._recvq.popleft()
                if receiver.__class__ is ChanRecv:  # a goroutine's: claim(), inline
                    if receiver.value.__class__ is Waiting:
                        receiver.value = value  # claimed and handed over at once
                        break
                elif receiver.claim():
                    receiver.value = value
                    break
            else:
                receiver = None
                if len(self._buf) < self._cap:
                    self._buf.append(value)
                    return
                loop = running_loop()
                op = new_solo(loop, self, "chan send", value)
                self._sendq.append(op)
        finally:
            self._lock.release()
        if receiver is not None:
            receiver.wake()
            return
        task = current_task_on(loop)  # type: ignore[arg-type]  # cancel_count(), inline
        base = 0 if task is None else task.cancelling()
        try:
            if timeout is None:
                await op.fut
            else:
                await self._wait_timed(op, timeout)
        except asyncio.CancelledError:
            cancel_send(self, op, base)
        if op.value is CLOSED:
            raise Closed("send on closed channel")

    def send_blocking(self, value: T, timeout: float | None = None) -> None:
        """Send from a plain thread, blocking it until the value is taken or buffered.

        Raises:
            Closed: the channel is (or becomes) closed.
            TimeoutError: *timeout* seconds passed; nothing was sent.
            RuntimeError: called on a thread that runs an event loop.
        """
        check_blocking_allowed("Chan.send_blocking()")
        with self._lock:
            got = self._try_send(value)
            if got is False:
                op = ThreadSolo(value)
                self._sendq.append(op)
        if got is not False:
            if got is not True:
                got.wake()
            return
        if not sleep_blocking_queued(self._lock, self._sendq, op, timeout):
            raise TimeoutError(f"send did not complete within {timeout} seconds")
        if op.value is CLOSED:
            raise Closed("send on closed channel")

    # -- receive ------------------------------------------------------------------------

    def recv_nowait(self) -> T:
        """Receive a value if one is ready, else raise [`WouldBlock`][gorun.WouldBlock].

        Raises:
            Closed: the channel is closed and drained.
            WouldBlock: nothing buffered and no sender waiting.
        """
        if running_loop() is None:
            note_plain_thread()
        with self._lock:
            got = self._try_recv()
        if got is None:
            raise WouldBlock("recv would block: nothing buffered and no sender waiting")
        return _took(got)  # type: ignore[no-any-return]

    async def recv_ok(
        self, timeout: float | None = None  # noqa: ASYNC109 (see send)
    ) -> tuple[T | None, bool]:
        """Receive ``(value, True)``, or ``(None, False)`` once closed and drained.

        Go's ``v, ok := <-ch``. A cancelled receive takes nothing: a value handed over
        in the instant of the cancellation goes back to the head of the channel.

        Args:
            timeout: Seconds to wait at most (None: for as long as it takes); then
                TimeoutError, and nothing was taken.

        Raises:
            TimeoutError: *timeout* passed before a value came.
            TypeError, ValueError: *timeout* is not a number of seconds, 0 or more.
        """
        if timeout is not None:
            timeout = check_seconds(timeout, "recv_ok() timeout")
            if timeout == 0:
                try:
                    return _at_once("recv_ok", self.recv_nowait), True
                except Closed:
                    return None, False
        lock = self._lock
        lock.acquire()
        try:
            got = self._try_recv()
            if got is None:
                op = new_recv()
                self._recvq.append(op)
        finally:
            lock.release()
        if got is not None:
            if got[2] is not None:
                got[2].wake()
            return got[0], got[1]
        try:
            if timeout is None:
                await op.fut
            else:
                await self._wait_timed(op, timeout, "recv_ok")
        except asyncio.CancelledError:
            self._cancel_recv(op)
        return (None, False) if op.value is CLOSED else (op.value, True)

    async def recv(self, timeout: float | None = None) -> T:  # noqa: ASYNC109 (see send)
        """Receive the next value, waiting for one.

        Values buffered before ``close()`` are still delivered; after them, Closed.
        Cancellation behaves as for `recv_ok()`: a cancelled receive took nothing.

        Args:
            timeout: Seconds to wait at most (None: as long as it takes). Exactly one of
                the receive and the timeout wins, as in a ``select`` with a timer case.

        Raises:
            Closed: the channel is closed and drained.
            TimeoutError: *timeout* passed before a value came.
            TypeError, ValueError: *timeout* is not a number of seconds, 0 or more.
        """
        if timeout is not None:
            timeout = check_seconds(timeout, "recv() timeout")
            if timeout == 0:
                return _at_once("recv", self.recv_nowait)
        # Three names and a stack of four (8 bytes each, parked): as few as Queue.get()'s
        # frame holds. After the lock, `got` is _try_recv's tuple, the sender whose value
        # was taken, or the ChanRecv this receive parks on.
        got: Any
        self._lock.acquire()  # acquire/release: see send()
        try:
            if self._buf or self._closed:
                got = self._try_recv()
            else:
                # Nothing buffered: a copy of Chan._try_recv's unbuffered case (see send).
                while self._sendq:  # (nothing changes a claimed sender's value)
                    got = self._sendq.popleft()
                    if got.__class__ is Solo:  # a goroutine's: claim(), inline
                        if got.winner is None:
                            got.winner = TAKEN
                            break
                    elif got.claim():
                        break
                else:
                    got = new_recv()
                    self._recvq.append(got)
        finally:
            self._lock.release()
        if got.__class__ is not ChanRecv:
            if got.__class__ is tuple:
                return _took(got)  # type: ignore[no-any-return]  # buffered, or closed
            got.wake()
            return got.value  # type: ignore[no-any-return]
        try:
            if timeout is None:
                await got.fut
            else:
                await self._wait_timed(got, timeout)
        except asyncio.CancelledError:
            self._cancel_recv(got)
        if got.value is CLOSED:
            raise Closed("recv on closed channel")
        return got.value  # type: ignore[no-any-return]

    def recv_blocking(self, timeout: float | None = None) -> T:
        """Receive from a plain thread, blocking it until a value arrives.

        Raises:
            Closed: the channel is closed and drained.
            TimeoutError: *timeout* seconds passed; nothing was taken.
            RuntimeError: called on a thread that runs an event loop.
        """
        check_blocking_allowed("Chan.recv_blocking()")
        with self._lock:
            got = self._try_recv()
            if got is None:
                op = ThreadSolo()
                self._recvq.append(op)
        if got is not None:
            value, ok, sender = got
            if sender is not None:
                sender.wake()
        else:
            if not sleep_blocking_queued(self._lock, self._recvq, op, timeout):
                raise TimeoutError(f"recv did not complete within {timeout} seconds")
            value = op.value
            ok = value is not CLOSED
        if not ok:
            raise Closed("recv on closed channel")
        return value  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[T]:
        return _Iterator(self)

    # Methods, not calls with the channel as an argument: a receive's frame (kept by
    # every parked goroutine) is as deep as its deepest call, and a method call passes
    # self in the slot that holds the method.
    _wait_timed = wait_timed
    _cancel_recv = cancel_recv

    # -- close --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel: no more sends; receivers drain the buffer, then see Closed.

        Every parked receiver wakes with ``(None, False)`` and every parked sender with
        Closed (its value was not sent).

        Raises:
            Closed: the channel was already closed.
        """
        if running_loop() is None:
            note_plain_thread()
        with self._lock:
            if self._closed:
                raise Closed("close of closed channel")
            self._closed = True
            woken: list[Queued] = []
            while (w := pop_live(self._recvq)) is not None:
                w.value = CLOSED
                woken.append(w)
            while (w := pop_live(self._sendq)) is not None:
                w.value = CLOSED  # its value was not sent
                woken.append(w)
        for w in woken:
            w.wake()


class _Iterator(Generic[T]):
    """``async for v in ch``: receives until the channel is closed and drained.

    A class rather than an async generator: each ``__anext__`` is a plain coroutine
    awaiting ``recv_ok()``, so the await chain from the goroutine's Task down to the
    channel stays visible to ``gorun.dump()`` and deadlock detection (an async
    generator's ``asend`` object hides what it awaits).
    """

    __slots__ = ("_ch",)

    def __init__(self, ch: Chan[T]) -> None:
        self._ch = ch

    def __aiter__(self) -> _Iterator[T]:
        return self

    async def __anext__(self) -> T:
        value, ok = await self._ch.recv_ok()
        if not ok:
            raise StopAsyncIteration
        return value  # type: ignore[return-value]
