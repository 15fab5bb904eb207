"""Go-style synchronization primitives that work across worker loops: WaitGroup and Once
(``Mutex`` and ``RWMutex`` are in ``_mutex``, ``Group`` in ``_group``).

Every primitive guards its state with a ``threading.Lock``, since the goroutines that
share it may run on different workers (threads). A goroutine that must wait queues a
`Solo` waiter under that lock and sleeps on it (a future of its own loop; a plain thread
sleeps on a ``ThreadSolo``). Whoever releases it claims the waiter under the lock and
wakes it after releasing the lock. A waiting coroutine that is cancelled claims
``CANCELLED`` under the lock and removes its waiter (``_waiter.sleep_queued``); the
CancelledError propagates, as with asyncio's own primitives.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from asyncio.log import logger
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._config import check_int
from ._go import go
from ._goroutine import Goroutine
from ._waiter import Solo, ThreadSolo, check_blocking_allowed
from ._waitq import claim_all, enqueue, sleep_blocking_queued, sleep_queued, wake_all

T = TypeVar("T")

_NO_TASK = object()


# -- WaitGroup ----------------------------------------------------------------------------------


class WaitGroup:
    """Wait for a collection of goroutines (or threads) to finish, as Go's ``sync.WaitGroup``.

    ``add(n)`` before starting work, ``done()`` as each piece finishes, and ``await
    wait()`` (or ``wait_blocking()`` on a plain thread) until the counter is zero.
    [`go()`][gorun.go] does all three bookkeeping steps for a goroutine. Every method is safe
    from any worker loop, any other asyncio loop and any plain thread.

    Example::

        wg = gorun.WaitGroup()
        for url in urls:
            wg.go(fetch(url))
        await wg.wait()
    """

    __slots__ = ("__weakref__", "_count", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._waiters: deque[Solo | ThreadSolo] = deque()

    def __repr__(self) -> str:
        with self._lock:
            count, waiting = self._count, len(self._waiters)
        return f"<WaitGroup count={count} waiters={waiting} at {id(self):#x}>"

    @property
    def count(self) -> int:
        """The counter now: work added and not yet done."""
        return self._count

    def add(self, n: int = 1) -> None:
        """Add *n* (which may be negative) to the counter.

        When the counter reaches zero, every waiter is released.

        Args:
            n: The amount to add.

        Raises:
            TypeError: *n* is not an int.
            ValueError: the counter would become negative (Go panics); the counter is
                left unchanged.
        """
        check_int("WaitGroup.add() n", n)
        with self._lock:
            count = self._count + n
            if count < 0:
                raise ValueError("negative WaitGroup counter")
            self._count = count
            woken = claim_all(self._waiters) if count == 0 else []
        wake_all(woken)

    def done(self) -> None:
        """Subtract one from the counter: one piece of work is done.

        Raises:
            ValueError: the counter would become negative.
        """
        self.add(-1)

    async def wait(self) -> None:
        """Wait until the counter is zero; return at once if it is zero now.

        A cancelled wait raises CancelledError (the counter is not affected).
        """
        with self._lock:
            if self._count == 0:
                return
            waiter = enqueue(self._waiters, "WaitGroup.wait", self)
        await sleep_queued(self._lock, self._waiters, waiter)

    def wait_blocking(self, timeout: float | None = None) -> None:
        """Block this plain thread until the counter is zero.

        Args:
            timeout: The most seconds to wait; None waits for as long as it takes.

        Raises:
            TimeoutError: *timeout* seconds passed first.
            RuntimeError: called on a thread that runs an event loop (it would freeze
                that loop); ``await wait()`` there instead.
        """
        check_blocking_allowed("WaitGroup.wait_blocking()")
        with self._lock:
            if self._count == 0:
                return
            waiter = ThreadSolo()
            self._waiters.append(waiter)
        if not sleep_blocking_queued(self._lock, self._waiters, waiter, timeout):
            raise TimeoutError(f"WaitGroup.wait_blocking() timed out after {timeout} seconds")

    def go(self, coro: Coroutine[Any, Any, T], /, *, name: str | None = None) -> Goroutine[T]:
        """Start *coro* as a goroutine counted by this WaitGroup.

        ``add(1)`` now, [`gorun.go()`][gorun.go] to start it, and ``done()`` when it finishes,
        whether it returns, raises or is cancelled. Its outcome stays on the returned
        handle (await it to see an exception).

        Args:
            coro: A coroutine object.
            name: The goroutine's name.

        Returns:
            The goroutine's handle.

        Raises:
            TypeError: *coro* is not a coroutine object, or *name* is not a str.
            RuntimeError: the runtime is shutting down.
        """
        self.add(1)
        try:
            g = go(coro, name=name)
        except BaseException:
            self.done()
            raise
        if not g._on_done(self._child_done):
            self._child_done()
        return g

    def _child_done(self) -> None:
        # Runs on the thread that finished the goroutine, inside its completion: it must
        # not raise there. A counter already at zero means done() was also called by hand.
        try:
            self.done()
        except ValueError:
            logger.error("%r: a goroutine started by WaitGroup.go() finished, but the "
                         "counter was already zero (done() called too often)", self)


# -- Once -------------------------------------------------------------------------------------


class Once:
    """Run a function exactly once, as Go's ``sync.Once``.

    The first ``await once.do(fn)`` calls *fn*; every other call, from any goroutine on
    any worker, waits until that first call has finished and then returns without
    calling its own *fn*.

    As in Go, a first call that fails still counts: if *fn* raises (or the goroutine
    running it is cancelled), the exception propagates to that caller only, the Once is
    done, and later calls return at once without running anything.
    """

    __slots__ = ("__weakref__", "_done", "_lock", "_runner", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._runner: object = None  # the task running fn (or a marker), while it runs
        self._waiters: deque[Solo] = deque()

    def __repr__(self) -> str:
        with self._lock:
            if self._done:
                state = "done"
            elif self._runner is not None:
                state = f"running waiters={len(self._waiters)}"
            else:
                state = "not done"
        return f"<Once {state} at {id(self):#x}>"

    @property
    def done(self) -> bool:
        """True once the first call's *fn* has finished (returned or raised)."""
        return self._done

    async def do(self, fn: Callable[[], object]) -> None:
        """Call *fn* if no call of this Once has started yet; else wait for that one.

        Args:
            fn: A function of no arguments: a coroutine function (its coroutine is
                awaited), any callable returning an awaitable, or a plain function.

        Raises:
            RuntimeError: *fn* calls ``do`` on the same Once from the same task (this
                would wait for itself forever; Go deadlocks).
            Exception: whatever *fn* raised, in the caller that ran it only.
        """
        task = asyncio.current_task()
        with self._lock:
            if self._done:
                return
            runner = self._runner
            if runner is None:
                self._runner = task if task is not None else _NO_TASK
            elif runner is task:
                raise RuntimeError("Once.do() called from its own fn: it would wait forever")
            else:
                waiter = enqueue(self._waiters, "Once.do", self)
        if runner is not None:
            await sleep_queued(self._lock, self._waiters, waiter)
            return
        try:
            result = fn()
            if inspect.isawaitable(result):
                await result
        finally:
            with self._lock:
                self._done = True
                self._runner = None
                woken = claim_all(self._waiters)
            wake_all(woken)
