"""Go-style locks that work across worker loops: ``Mutex`` and ``RWMutex``.

State is guarded by a ``threading.Lock`` (see ``_sync``). Whoever releases a lock claims
the next waiter under that lock and updates the state on its behalf (ownership passes
directly to the claimed waiter), then wakes it after releasing the lock. A waiting
coroutine that is cancelled claims ``CANCELLED`` under the lock and removes its waiter;
if it lost that race (the releaser had already granted it the lock), it hands the grant
on, so a cancelled acquisition never leaves the caller holding anything. Either way the
CancelledError propagates, as with asyncio's own locks.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from types import TracebackType

from ._waiter import Solo
from ._waitq import claim_all, enqueue, has_live, pop_live, sleep_queued, wake_all

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
            waiter = enqueue(self._waiters, "Mutex.lock", self)
        await sleep_queued(self._lock, self._waiters, waiter, undo=self._release_locked)

    def _release_locked(self) -> list[Solo]:
        # With self._lock held: pass ownership to the next waiter, or free the lock.
        w = pop_live(self._waiters)
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
        wake_all(woken)

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
        if prefer_readers or not has_live(self._wq):
            woken = claim_all(self._rq)
            if woken:
                self._readers += len(woken)
                return woken
        if self._readers == 0:
            w = pop_live(self._wq)
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
            if self._writer or has_live(self._wq):
                return False
            self._readers += 1
            return True

    async def rlock(self) -> None:
        """Take a read lock, waiting while a writer holds the lock or waits for it."""
        with self._lock:
            if not self._writer and not has_live(self._wq):
                self._readers += 1
                return
            waiter = enqueue(self._rq, "RWMutex.rlock", self)
        await sleep_queued(self._lock, self._rq, waiter, undo=self._runlock_locked)

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
        wake_all(woken)

    def try_lock(self) -> bool:
        """Take the write lock if it is free now, without waiting.

        Returns:
            True if the caller now holds the write lock.
        """
        with self._lock:
            if self._writer or self._readers or has_live(self._wq):
                return False
            self._writer = True
            return True

    async def lock(self) -> None:
        """Take the write lock, waiting until no reader or writer holds it.

        A waiting writer keeps new readers out. If it is cancelled while waiting, the
        readers it kept out are let in.
        """
        with self._lock:
            if not self._writer and not self._readers and not has_live(self._wq):
                self._writer = True
                return
            waiter = enqueue(self._wq, "RWMutex.lock", self)
        await sleep_queued(self._lock, self._wq, waiter,
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
        wake_all(woken)


class _Side:
    # One side of an RWMutex, for ``async with``.
    __slots__ = ("_rw",)

    def __init__(self, rw: RWMutex) -> None:
        self._rw = rw

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._rw!r}>"


class ReaderLock(_Side):
    """The read side of an [`RWMutex`][gorun.RWMutex], as ``rw.reader``.

    Use it as ``async with rw.reader:``.
    """

    __slots__ = ()

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


class WriterLock(_Side):
    """The write side of an [`RWMutex`][gorun.RWMutex], as ``rw.writer``.

    Use it as ``async with rw.writer:``.
    """

    __slots__ = ()

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
