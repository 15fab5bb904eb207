"""Wait queues: what a primitive's queue of parked operations holds, and the helpers
that claim, drop and sleep on its entries.

A channel, Mutex, WaitGroup or Once keeps its parked operations in a ``deque`` guarded by
its own lock: `Solo` and `ChanRecv` for goroutines, `ThreadSolo` for plain threads, a
select's `Waiter` per case. All of them answer the `Queued` protocol of ``_waiter``'s
claiming rule: every helper here but `wake_all` runs with that lock held, and `wake_all`
wakes the claimed ones after it is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ._waiter import CANCELLED, Solo, ThreadSolo, new_solo


class Queued(Protocol):
    """What a primitive's wait queue holds: a Solo, a ChanRecv, a ThreadSolo or a select's
    Waiter."""

    value: Any  # the value to send, the value received, or CLOSED

    @property
    def case(self) -> int: ...

    def claim(self) -> bool: ...
    def wake(self) -> None: ...
    @property
    def stale(self) -> bool: ...


# -- wait queues (all but wake_all run with the primitive's lock held) --------------------------


def pop_live(queue: deque[Any]) -> Any:
    """Claim and return the first waiter still waiting; drop stale ones on the way."""
    while queue:
        w = queue.popleft()
        if w.claim():
            return w
    return None


def has_live(queue: deque[Any]) -> bool:
    """Whether a waiter still waits in *queue*; drops stale ones from its head."""
    while queue and queue[0].stale:
        queue.popleft()
    return bool(queue)


def claim_all(queue: deque[Any]) -> list[Any]:
    """Claim every waiter still waiting in *queue*, in order."""
    woken = []
    while (w := pop_live(queue)) is not None:
        woken.append(w)
    return woken


def wake_all(waiters: list[Any]) -> None:
    """Wake each claimed waiter (after releasing the primitive's lock)."""
    for w in waiters:
        w.wake()


def remove(queue: deque[Any], waiter: object) -> None:
    """Take *waiter* out of *queue* if it is there."""
    with contextlib.suppress(ValueError):
        queue.remove(waiter)


def enqueue(queue: deque[Any], what: str, owner: object) -> Solo:
    """Queue a `Solo` of the running loop on *queue*, waiting for *what* on *owner*."""
    waiter = new_solo(asyncio.get_running_loop(), owner, what)
    queue.append(waiter)
    return waiter


async def sleep_queued(
    lock: threading.Lock,
    queue: deque[Any],
    waiter: Solo,
    on_give_up: Callable[[], list[Any]] | None = None,
    undo: Callable[[], list[Any]] | None = None,
) -> None:
    """Sleep until *waiter* is claimed; a cancelled sleep always raises CancelledError.

    If the cancellation wins the claim, the waiter leaves *queue* (``on_give_up`` may
    then hand on what it was blocking, returning waiters to wake). If a releaser claimed
    the waiter first, what it granted is handed back (``undo``: a lock goes to the next
    waiter), so a cancelled acquisition never leaves the caller holding anything.
    Either way CancelledError propagates, as asyncio's own locks do.
    """
    try:
        await waiter.fut
    except asyncio.CancelledError:
        woken: list[Any] = []
        with lock:
            if waiter.claim(CANCELLED):
                remove(queue, waiter)
                if on_give_up is not None:
                    woken = on_give_up()
            elif undo is not None:
                woken = undo()
        wake_all(woken)
        raise


def sleep_blocking_queued(
    lock: threading.Lock, queue: deque[Any], waiter: ThreadSolo, timeout: float | None
) -> bool:
    """Block this plain thread until *waiter* is claimed; False if *timeout* passed first
    (the waiter then left *queue*)."""
    if waiter.sleep_blocking(timeout):
        return True
    with lock:
        gave_up = waiter.claim(CANCELLED)
        if gave_up:
            remove(queue, waiter)
    if gave_up:
        return False
    waiter.sleep_blocking(None)  # claimed meanwhile: its wake is on the way
    return True
