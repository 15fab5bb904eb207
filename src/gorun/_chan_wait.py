"""How a parked channel operation ends: handed off, timed out, or cancelled.

A parked ``send`` (a `Solo`) or ``recv`` (a `ChanRecv`) waits in one of the channel's
queues, and whoever claims it first, under the channel's lock, decides its outcome (see
``_waiter``): a counterparty (the hand-off happened), ``close()``, its timer
(``timeout=``: it took no effect, TimeoutError) or its own cancellation (it took no
effect, CancelledError).

A cancellation that loses the claim arrives when the operation already took effect, and
the operation must not be reported as both. What can be undone is: a received value is
put back at the head of the channel, and the receive raises. A sent value cannot be
taken back from the receiver that has it, so the send completes and the cancellation
is handed on (`complete_cancelled`).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

from ._thread_state import running_loop
from ._waiter import CANCELLED, CLOSED, TAKEN, TIMED_OUT, Blocking, Solo, complete_cancelled
from ._waitq import Queued, pop_live, remove

if TYPE_CHECKING:
    from ._chan import Chan

_monotonic = time.monotonic
_new = object.__new__


class Waiting:
    """A parked receive's value while it waits, which says since when (``since``).

    One is shared by the receives that park within the same millisecond, as
    ``_waiter.wait_start()`` shares its floats: no object of its own per receive.
    """

    __slots__ = ("since",)

    since: float


_waiting = [_new(Waiting)]  # the latest: see new_recv()
_waiting[0].since = 0.0


class ChanRecv(Blocking):
    """A goroutine's parked channel receive (``recv``, ``recv_ok``): a `Solo` in two slots.

    Every parked receive holds one, so it keeps its future and one slot, ``value``, for
    the rest. While it waits, ``value`` is a `Waiting`. A claim puts its mark there
    (TAKEN, TIMED_OUT or CANCELLED), and a counterparty that claimed it puts the value
    it hands over, or CLOSED, in the same hold of the channel's lock. So, under that
    lock, it is decided exactly when ``value`` is no `Waiting`; once woken, ``value`` is
    what ended it (the marks are objects of their own, which nobody can send). Its
    label is a class attribute, and its channel is not kept: the frame that holds it
    (``Chan.recv``'s or ``recv_ok``'s) holds the channel, which passes itself to the
    functions below, and the dump finds it there (`blocked_on`). Made by `new_recv`.
    """

    __slots__ = ("value",)

    case: ClassVar[int] = 0  # as a select's Waiter, for code that handles both
    what = "chan receive"
    owner = None  # (see blocked_on)
    value: Any

    @property
    def since(self) -> float | None:  # type: ignore[override]
        """When the wait began; None once decided."""
        value = self.value
        return value.since if value.__class__ is Waiting else None

    def blocked_on(self, frame: FrameType) -> str:
        """The channel's repr: the value of its frame that has a queue of receivers."""
        for value in list(frame.f_locals.values()):
            if hasattr(type(value), "_recvq"):
                return repr(value)
        return "a channel"

    def claim(self, mark: Any = TAKEN) -> bool:
        """Decide this receive (see the class docstring); False if already decided.

        Call with the channel's lock held.
        """
        if self.value.__class__ is not Waiting:
            return False
        self.value = mark
        return True

    @property
    def stale(self) -> bool:
        """Decided already (completed, or it gave up)."""
        return self.value.__class__ is not Waiting

    @property
    def winner(self) -> Any:
        """As a Solo's: None while it waits, else TIMED_OUT, CANCELLED or TAKEN."""
        value = self.value
        if value.__class__ is Waiting:
            return None
        return value if value is TIMED_OUT or value is CANCELLED else TAKEN


def new_recv() -> ChanRecv:
    """A `ChanRecv` on the running loop.

    (No argument: the call is the deepest point of the receive's frame, which a parked
    goroutine keeps, 8 bytes per value it can hold.)

    Raises:
        RuntimeError: the await runs outside an event loop.
    """
    loop = running_loop()
    if loop is None:
        raise RuntimeError("no running event loop")
    op: ChanRecv = _new(ChanRecv)
    op.fut = loop.create_future()
    now = _monotonic()
    mark = _waiting[0]
    if now - mark.since >= 1e-3:
        mark = _new(Waiting)
        mark.since = now
        _waiting[0] = mark  # a race between threads only means a mark more
    op.value = mark
    return op


async def wait_timed(
    ch: Chan[Any], op: Solo | ChanRecv, seconds: float, what: str | None = None
) -> None:
    """Wait for *op*, queued on *ch*, at most *seconds*; *what* names the operation in
    the TimeoutError (by default ``"recv"`` for a `ChanRecv`, else ``"send"``). Chan
    calls it as its method ``_wait_timed``, whose call needs no slot more in the
    receive's frame.

    A timer on op's loop claims it as TIMED_OUT unless a counterparty (or a cancellation)
    claimed it first: exactly one of the hand-off and the timeout wins.

    Raises:
        TimeoutError: the timer won; *op* left its queue and took no effect.
    """
    recv = op.__class__ is ChanRecv
    queue = ch._recvq if recv else ch._sendq
    if what is None:
        what = "recv" if recv else "send"
    handle = op.fut.get_loop().call_later(seconds, _expire, ch, op, queue)
    try:
        await op.fut
    finally:
        handle.cancel()
    if op.winner is TIMED_OUT:
        raise TimeoutError(f"{what} did not complete within {seconds} seconds")


def _expire(ch: Chan[Any], op: Solo | ChanRecv, queue: deque[Queued]) -> None:
    with ch._lock:
        if not op.claim(TIMED_OUT):
            return
        remove(queue, op)
    op.wake()


def cancel_send(ch: Chan[Any], op: Solo, base: int) -> None:
    """A parked send's await was cancelled: give up and raise the CancelledError being
    handled, unless a receiver took the value in that instant. Then the value was sent,
    and the send completes (*base*: the task's cancel count before it parked, see
    `complete_cancelled`). Call from the ``except`` block."""
    with ch._lock:
        gave_up = op.claim(CANCELLED)
        if gave_up:
            remove(ch._sendq, op)
    if gave_up or op.winner is TIMED_OUT:
        raise  # the caller's CancelledError, from its except block
    complete_cancelled(base, sys.exception())  # type: ignore[arg-type]


def cancel_recv(ch: Chan[Any], op: ChanRecv) -> None:
    """A parked receive's await was cancelled: give up and raise the CancelledError
    being handled. A value a sender handed over in that instant goes back to the head of
    the channel, so that a cancelled receive never swallows a value. (A receive that
    timed out first holds no value.) Call from the ``except`` block."""
    # (Chan calls it as its method _cancel_recv: see wait_timed.)
    woken = None
    with ch._lock:
        if op.claim(CANCELLED):
            remove(ch._recvq, op)
        elif op.value is not CLOSED and op.value is not TIMED_OUT:  # a value: it goes back
            woken = put_back(ch, op.value)
    if woken is not None:
        woken.wake()
    raise  # the caller's CancelledError, from its except block


def put_back(ch: Chan[Any], value: Any) -> Queued | None:
    """Return a received *value* to *ch*, ahead of the rest; call with its lock held.

    It goes to the next parked receiver, else to the head of the buffer (which may then
    hold one value more than cap until it is received). Returns the receiver to wake.
    """
    w: Queued | None = pop_live(ch._recvq)
    if w is not None:
        w.value = value
        return w
    ch._buf.appendleft(value)
    return None
