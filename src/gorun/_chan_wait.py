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
from collections import deque
from typing import TYPE_CHECKING, Any

from ._waiter import CANCELLED, CLOSED, TIMED_OUT, ChanRecv, Solo, complete_cancelled
from ._waitq import Queued, pop_live, remove

if TYPE_CHECKING:
    from ._chan import Chan


async def wait_timed(op: Solo | ChanRecv, seconds: float, what: str | None = None) -> None:
    """Wait for *op*, queued on the channel ``op.owner``, at most *seconds*; *what*
    names the operation in the TimeoutError (by default ``"recv"`` for a `ChanRecv`,
    else ``"send"``).

    A timer on op's loop claims it as TIMED_OUT unless a counterparty (or a cancellation)
    claimed it first: exactly one of the hand-off and the timeout wins.

    Raises:
        TimeoutError: the timer won; *op* left its queue and took no effect.
    """
    ch: Chan[Any] = op.owner  # type: ignore[assignment]
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


def cancel_recv(op: ChanRecv) -> None:
    """A parked receive's await was cancelled: give up and raise the CancelledError
    being handled. A value a sender handed over in that instant goes back to the head of
    the channel, so that a cancelled receive never swallows a value. (A receive that
    timed out first holds no value.) Call from the ``except`` block."""
    # One argument, not the channel too: a slot less in every parked receive's frame.
    ch: Chan[Any] = op.owner  # type: ignore[assignment]  # a receive's owner is its Chan
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
