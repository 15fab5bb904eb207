"""Go-style synchronization primitives that work across worker loops: WaitGroup, Mutex,
RWMutex and Once (``Group`` is in ``_group``).

Every primitive guards its state with a ``threading.Lock``, since the goroutines that
share it may run on different workers (threads). A goroutine that must wait queues a
`Solo` waiter under that lock and sleeps on it (a future on its
own loop, or a ``threading.Event`` for a plain thread). Whoever releases it claims the
waiter under the lock, updates the state on its behalf (ownership of a Mutex passes
directly to the claimed waiter), and wakes it after releasing the lock. A waiting
coroutine that is cancelled claims ``CANCELLED`` under the lock and removes its waiter;
if it lost that race (the releaser had already granted it the Mutex), it hands the grant
on, so a cancelled acquisition never leaves the caller holding anything. Either way the
CancelledError propagates, as with asyncio's own locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from asyncio.log import logger
from collections import deque
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from ._goroutine import Goroutine, go
from ._waiter import CANCELLED, Solo, check_blocking_allowed

T = TypeVar("T")

_NO_TASK = object()


# -- shared helpers (all but _wake and _sleep run with the primitive's lock held) -------------


def _pop_live(queue: deque[Solo]) -> Solo | None:
    # Claim the first waiter that is still waiting; drop stale ones on the way.
    while queue:
        w = queue.popleft()
        if w.claim():
            return w
    return None


def _has_live(queue: deque[Solo]) -> bool:
    while queue and queue[0].stale:
        queue.popleft()
    return bool(queue)


def _claim_all(queue: deque[Solo]) -> list[Solo]:
    woken = []
    while (w := _pop_live(queue)) is not None:
        woken.append(w)
    return woken


def _wake(waiters: list[Solo]) -> None:
    for w in waiters:
        w.wake()


def _enqueue(queue: deque[Solo]) -> Solo:
    waiter = Solo(asyncio.get_running_loop())
    queue.append(waiter)
    return waiter


async def _sleep(
    lock: threading.Lock,
    queue: deque[Solo],
    waiter: Solo,
    on_give_up: Callable[[], list[Solo]] | None = None,
    undo: Callable[[], list[Solo]] | None = None,
) -> None:
    """Sleep until *waiter* is claimed; a cancelled sleep always raises CancelledError.

    If the cancellation wins the claim, the waiter leaves *queue* (``on_give_up`` may
    then hand on what it was blocking, returning waiters to wake). If a releaser claimed
    the waiter first, what it granted is handed back (``undo``: a lock goes to the next
    waiter), so a cancelled acquisition never leaves the caller holding anything.
    Either way CancelledError propagates, as asyncio's own locks do.
    """
    try:
        await waiter.fut  # type: ignore[misc]
    except asyncio.CancelledError:
        woken: list[Solo] = []
        with lock:
            if waiter.claim(CANCELLED):
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
                if on_give_up is not None:
                    woken = on_give_up()
            elif undo is not None:
                woken = undo()
        _wake(woken)
        raise


def check_int(what: str, value: object) -> int:
    """*value*, if it is an int (not a bool); else a TypeError that names *what*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    return value


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
        self._waiters: deque[Solo] = deque()

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
            woken = _claim_all(self._waiters) if count == 0 else []
        _wake(woken)

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
            waiter = _enqueue(self._waiters)
        await _sleep(self._lock, self._waiters, waiter)

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
            waiter = Solo(None)
            self._waiters.append(waiter)
        if waiter.sleep_blocking(timeout):
            return
        with self._lock:
            gave_up = waiter.claim(CANCELLED)
            if gave_up:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        if gave_up:
            raise TimeoutError(f"WaitGroup.wait_blocking() timed out after {timeout} seconds")
        waiter.sleep_blocking(None)  # claimed meanwhile: its wake is on the way

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


# -- Mutex ------------------------------------------------------------------------------------


class Mutex:
    """A mutual-exclusion lock for goroutines on any worker, as Go's ``sync.Mutex``.

    Use ``async with mu:``, or ``await mu.lock()`` and ``mu.unlock()``. Waiters get the
    lock in FIFO order: ``unlock()`` hands ownership directly to the longest waiting
    goroutine (it never becomes free in between), so no goroutine barges ahead of one
    that is waiting, and none starves.

    As in Go, a Mutex is not tied to the goroutine that locked it: any goroutine may
    unlock it. Unlike ``asyncio.Lock``, it works across worker loops.

    Cancellation: a goroutine cancelled while waiting for the lock gives up without
    owning it: if ``unlock()`` had already handed it the lock in that instant, it passes
    the lock on to the next waiter (or frees it) before CancelledError propagates.
    """

    __slots__ = ("__weakref__", "_lock", "_locked", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locked = False
        self._waiters: deque[Solo] = deque()

    def __repr__(self) -> str:
        with self._lock:
            state = "locked" if self._locked else "unlocked"
            waiting = len(self._waiters)
        return f"<Mutex {state} waiters={waiting} at {id(self):#x}>"

    def locked(self) -> bool:
        """True while some goroutine holds the lock."""
        return self._locked

    def try_lock(self) -> bool:
        """Take the lock if it is free now, without waiting.

        Returns:
            True if the caller now holds the lock, False if it is held.
        """
        with self._lock:
            if self._locked:
                return False
            self._locked = True
            return True

    async def lock(self) -> None:
        """Take the lock, waiting (in FIFO order) while it is held.

        If the await is cancelled, the caller does not hold the lock and CancelledError
        propagates (a lock handed over in that instant is passed on).
        """
        with self._lock:
            if not self._locked:
                self._locked = True
                return
            waiter = _enqueue(self._waiters)
        await _sleep(self._lock, self._waiters, waiter, undo=self._release_locked)

    def _release_locked(self) -> list[Solo]:
        # With self._lock held: pass ownership to the next waiter, or free the lock.
        w = _pop_live(self._waiters)
        if w is None:
            self._locked = False
            return []
        return [w]

    def unlock(self) -> None:
        """Release the lock; the longest waiting goroutine, if any, now holds it.

        Raises:
            RuntimeError: the Mutex is not locked.
        """
        with self._lock:
            if not self._locked:
                raise RuntimeError("unlock of unlocked Mutex")
            woken = self._release_locked()
        _wake(woken)

    async def __aenter__(self) -> None:
        """Take the lock (see `lock()`)."""
        await self.lock()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the lock (see `unlock()`)."""
        self.unlock()


# -- RWMutex ----------------------------------------------------------------------------------


class RWMutex:
    """A reader/writer lock for goroutines on any worker, as Go's ``sync.RWMutex``.

    Any number of readers may hold it together, or one writer alone. It prefers writers:
    once a writer waits, new readers wait too (behind it), so a stream of readers cannot
    starve a writer. When a writer unlocks, the readers that waited meanwhile all get
    the lock before the next writer, so writers cannot starve readers either.

    Use ``async with rw.reader:`` / ``async with rw.writer:``, or the methods
    `rlock()` / `runlock()` / `lock()` / `unlock()`. As with
    [`Mutex`][gorun.Mutex], locks are not tied to a goroutine, and a goroutine cancelled while
    waiting never ends up holding the lock (a grant made in that instant is passed on).
    """

    __slots__ = ("__weakref__", "_lock", "_readers", "_rq", "_wq", "_writer", "reader", "writer")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0  # readers holding the lock
        self._writer = False  # a writer holds the lock
        self._rq: deque[Solo] = deque()  # readers waiting
        self._wq: deque[Solo] = deque()  # writers waiting
        #: ``async with rw.reader:`` holds the lock as a reader.
        self.reader = ReaderLock(self)
        #: ``async with rw.writer:`` holds the lock as the writer.
        self.writer = WriterLock(self)

    def __repr__(self) -> str:
        with self._lock:
            state = "write-locked" if self._writer else f"readers={self._readers}"
            waiting = f"waiting readers={len(self._rq)} writers={len(self._wq)}"
        return f"<RWMutex {state} {waiting} at {id(self):#x}>"

    def _grant_locked(self, prefer_readers: bool) -> list[Solo]:
        # Hand the lock on after a state change: the waiting readers (all of them), if
        # readers go first or no writer waits; else the next writer once it is free.
        if self._writer:
            return []
        if prefer_readers or not _has_live(self._wq):
            woken = _claim_all(self._rq)
            if woken:
                self._readers += len(woken)
                return woken
        if self._readers == 0:
            w = _pop_live(self._wq)
            if w is not None:
                self._writer = True
                return [w]
        return []

    def rlocked(self) -> bool:
        """True while one or more readers hold the lock."""
        return self._readers > 0

    def locked(self) -> bool:
        """True while a writer holds the lock."""
        return self._writer

    def try_rlock(self) -> bool:
        """Take a read lock if that needs no waiting.

        Returns:
            True if the caller now holds a read lock; False if a writer holds the lock
            or waits for it.
        """
        with self._lock:
            if self._writer or _has_live(self._wq):
                return False
            self._readers += 1
            return True

    async def rlock(self) -> None:
        """Take a read lock, waiting while a writer holds the lock or waits for it."""
        with self._lock:
            if not self._writer and not _has_live(self._wq):
                self._readers += 1
                return
            waiter = _enqueue(self._rq)
        await _sleep(self._lock, self._rq, waiter, undo=self._runlock_locked)

    def _runlock_locked(self) -> list[Solo]:
        self._readers -= 1
        return self._grant_locked(prefer_readers=False)

    def _unlock_locked(self) -> list[Solo]:
        self._writer = False
        return self._grant_locked(prefer_readers=True)

    def runlock(self) -> None:
        """Release one read lock; the last reader out lets a waiting writer in.

        Raises:
            RuntimeError: no reader holds the lock.
        """
        with self._lock:
            if self._readers == 0:
                raise RuntimeError("runlock of unlocked RWMutex")
            self._readers -= 1
            woken = self._grant_locked(prefer_readers=False)
        _wake(woken)

    def try_lock(self) -> bool:
        """Take the write lock if it is free now, without waiting.

        Returns:
            True if the caller now holds the write lock.
        """
        with self._lock:
            if self._writer or self._readers or _has_live(self._wq):
                return False
            self._writer = True
            return True

    async def lock(self) -> None:
        """Take the write lock, waiting until no reader or writer holds it.

        A waiting writer keeps new readers out. If it is cancelled while waiting, the
        readers it kept out are let in.
        """
        with self._lock:
            if not self._writer and not self._readers and not _has_live(self._wq):
                self._writer = True
                return
            waiter = _enqueue(self._wq)
        await _sleep(self._lock, self._wq, waiter,
                     functools.partial(self._grant_locked, False), undo=self._unlock_locked)

    def unlock(self) -> None:
        """Release the write lock; the readers that waited meanwhile go first.

        Raises:
            RuntimeError: no writer holds the lock.
        """
        with self._lock:
            if not self._writer:
                raise RuntimeError("unlock of unlocked RWMutex")
            self._writer = False
            woken = self._grant_locked(prefer_readers=True)
        _wake(woken)


class ReaderLock:
    """The read side of an [`RWMutex`][gorun.RWMutex], as ``rw.reader``.

    Use it as ``async with rw.reader:``.
    """

    __slots__ = ("_rw",)

    def __init__(self, rw: RWMutex) -> None:
        self._rw = rw

    def __repr__(self) -> str:
        return f"<ReaderLock of {self._rw!r}>"

    async def __aenter__(self) -> None:
        """Take a read lock (see `RWMutex.rlock()`)."""
        await self._rw.rlock()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the read lock (see `RWMutex.runlock()`)."""
        self._rw.runlock()


class WriterLock:
    """The write side of an [`RWMutex`][gorun.RWMutex], as ``rw.writer``.

    Use it as ``async with rw.writer:``.
    """

    __slots__ = ("_rw",)

    def __init__(self, rw: RWMutex) -> None:
        self._rw = rw

    def __repr__(self) -> str:
        return f"<WriterLock of {self._rw!r}>"

    async def __aenter__(self) -> None:
        """Take the write lock (see `RWMutex.lock()`)."""
        await self._rw.lock()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the write lock (see `RWMutex.unlock()`)."""
        self._rw.unlock()


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
                waiter = _enqueue(self._waiters)
        if runner is not None:
            await _sleep(self._lock, self._waiters, waiter)
            return
        try:
            result = fn()
            if inspect.isawaitable(result):
                await result
        finally:
            with self._lock:
                self._done = True
                self._runner = None
                woken = _claim_all(self._waiters)
            _wake(woken)
