"""``select``: wait on several channel operations and commit exactly one.

The ready check and the commit happen with every involved channel locked (in a fixed
order, so two selects over the same channels cannot deadlock), so the chosen case takes
or gives a value and the others leave no trace. When no case is ready, one waiter per
case is queued on its channel, all sharing one parker: the first counterparty to claim
the parker wins, and the stale waiters are then removed from the other channels.
"""

from __future__ import annotations

import asyncio
import collections.abc
import random
from collections import deque
from types import FrameType
from typing import Any

from ._chan import Chan, Closed
from ._chan_wait import put_back
from ._waiter import (
    CANCELLED,
    CLOSED,
    TAKEN,
    Parker,
    Waiter,
    cancel_count,
    complete_cancelled,
    new_parker,
)
from ._waitq import Queued, remove

_RECV, _RECV_OK, _SEND = "recv", "recv_ok", "send"

_random = random.Random()


def _parse(index: int, case: object) -> tuple[str, Chan[Any], Any]:
    value = None
    if isinstance(case, tuple):
        if len(case) != 2:
            raise TypeError(
                f"select() case {index}: a send case is (ch.send, value), got a tuple of "
                f"{len(case)} items"
            )
        case, value = case
    owner = getattr(case, "__self__", None)
    func = getattr(case, "__func__", None)
    if isinstance(owner, Chan):
        if func is Chan.send:
            return _SEND, owner, value
        if func is Chan.recv:
            return _RECV, owner, None
        if func is Chan.recv_ok:
            return _RECV_OK, owner, None
    raise TypeError(
        f"select() case {index} must be ch.recv, ch.recv_ok or (ch.send, value), "
        f"got {case!r}"
    )


#: A parsed case: its kind (_RECV, _RECV_OK or _SEND), its channel, the value to send.
Case = tuple[str, Chan[Any], Any]


class SelectParker(Parker):
    """The parker of a waiting ``select``; the dump shows its cases."""

    __slots__ = ()

    def blocked_on(self, frame: FrameType) -> str:
        cases: list[Case] = self.owner  # type: ignore[assignment]
        return "; ".join(f"{kind} {ch!r}" for kind, ch, _ in cases)


async def select(*cases: Any, default: bool = False) -> tuple[int, Any]:
    """Wait until one of several channel operations can proceed, and do exactly that one.

    Each case is ``ch.recv``, ``ch.recv_ok`` or ``(ch.send, value)`` (note: not called).
    Returns ``(index, value)``: the index of the case that ran, and what it received
    (``ch.recv``), the ``(value, ok)`` pair (``ch.recv_ok``) or None (a send). If several
    cases are ready, one is chosen uniformly at random. The cases that did not run took
    and gave nothing.

    Args:
        *cases: The operations to wait on.
        default: If True and no case is ready now, return ``(-1, None)`` at once.

    Raises:
        Closed: the chosen case is ``ch.recv`` on a closed, drained channel, or a send on
            a closed channel (as the awaited operation would).
        TypeError: a case is not one of the forms above.
        ValueError: no cases and no default (that would block forever).
    """
    ops = _parse_all(cases)
    if not ops and not default:
        raise ValueError("select() with no cases and no default would block forever")
    loop = asyncio.get_running_loop()
    chans = sorted({id(ch): ch for _, ch, _ in ops}.values(), key=id)
    parker: Parker | None = None
    queued: list[tuple[Chan[Any], Waiter, deque[Queued]]] = []
    for ch in chans:
        ch._lock.acquire()
    try:
        chosen, result, error, to_wake = _commit_ready(ops)
        if chosen < 0 and not default:  # nothing committed: wait on every case
            parker = new_parker(SelectParker, loop, "select", ops, shared=True)
            for i, (kind, ch, value) in enumerate(ops):
                waiter = Waiter(parker, i, value)
                queue = ch._sendq if kind == _SEND else ch._recvq
                queue.append(waiter)
                queued.append((ch, waiter, queue))
    finally:
        for ch in reversed(chans):
            ch._lock.release()
    if to_wake is not None:
        to_wake.wake()
    if parker is None:
        if error is not None:
            raise error
        return chosen, result
    return await _wait(parker, ops, queued)


def _parse_all(cases: tuple[Any, ...]) -> list[Case]:
    try:
        ops = [_parse(i, case) for i, case in enumerate(cases)]
    except TypeError:
        for case in cases:  # select(ch.recv()) made a coroutine: close it, unawaited
            inner = case[0] if isinstance(case, tuple) and case else case
            if isinstance(inner, collections.abc.Coroutine):
                inner.close()
        raise
    for i, case in enumerate(cases):
        if (ops[i][0] == _SEND) != isinstance(case, tuple):
            raise TypeError(
                f"select() case {i}: a send case is (ch.send, value); a receive case is "
                "ch.recv or ch.recv_ok, not called and not in a tuple"
            )
    return ops


def _commit_ready(ops: list[Case]) -> tuple[int, Any, BaseException | None, Queued | None]:
    # With every channel locked: commit one ready case, chosen at random. Returns its
    # index (-1: none), its result, the error it raises, and the waiter to wake.
    # Each ready case is committed by trying it. A case that looked ready may fail to
    # commit: the waiter that made it ready can be decided meanwhile by its own
    # select's cancellation, which takes that select's parker lock, not this channel's.
    # Then the next ready case is tried.
    ready = [
        i
        for i, (kind, ch, _) in enumerate(ops)
        if (ch._send_ready() if kind == _SEND else ch._recv_ready())
    ]
    _random.shuffle(ready)
    for i in ready:
        kind, ch, value = ops[i]
        if kind == _SEND:
            try:
                got = ch._try_send(value)
            except Closed as exc:
                return i, None, exc, None
            if got is False:
                continue
            return i, None, None, None if got is True else got
        received = ch._try_recv()
        if received is None:
            continue
        value, ok, to_wake = received
        if kind == _RECV_OK:
            return i, (value, ok), None, to_wake
        if ok:
            return i, value, None, to_wake
        return i, None, Closed("recv on closed channel"), to_wake
    return -1, None, None, None


async def _wait(
    parker: Parker, ops: list[Case], queued: list[tuple[Chan[Any], Waiter, deque[Queued]]]
) -> tuple[int, Any]:
    # Sleep until a case wins (or the await is cancelled), then take the others back.
    base = cancel_count(parker.fut.get_loop())
    try:
        await parker.fut
    except asyncio.CancelledError as exc:
        gave_up = parker.claim(CANCELLED)
        _dequeue(queued, None)
        if gave_up:
            raise
        # A case won in the instant of the cancellation. A received value goes back to
        # its channel and the select raises; a sent value cannot be taken back, so the
        # select completes (see complete_cancelled).
        won: Waiter = parker.winner
        won_kind, won_ch, _ = ops[won.case]
        if won_kind != _SEND:
            if won.value is not CLOSED:
                with won_ch._lock:
                    back = put_back(won_ch, won.value)
                if back is not None:
                    back.wake()
            raise
        complete_cancelled(base, exc)
    else:
        _dequeue(queued, parker.winner)
    winner: Waiter = parker.winner
    # The parker and its winner refer to each other: break the cycle, so that both are
    # freed at once rather than by the garbage collector. (The parker stays decided.)
    parker.winner = TAKEN
    kind = ops[winner.case][0]
    value = winner.value
    if kind == _SEND:
        if value is CLOSED:
            raise Closed("send on closed channel")
        return winner.case, None
    if kind == _RECV_OK:
        return winner.case, (None, False) if value is CLOSED else (value, True)
    if value is CLOSED:
        raise Closed("recv on closed channel")
    return winner.case, value


def _dequeue(queued: list[tuple[Chan[Any], Waiter, deque[Queued]]], keep: object) -> None:
    # Remove this select's waiters that did not win, so that a select repeated in a
    # loop does not pile stale waiters on a channel that rarely fires.
    for ch, waiter, queue in queued:
        if waiter is keep:
            continue
        with ch._lock:
            remove(queue, waiter)
