"""Go-style synchronization primitives that work across worker loops: WaitGroup, Mutex,
RWMutex, Once, and Group (a TaskGroup whose children are goroutines).

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
import collections.abc
import contextlib
import contextvars
import functools
import inspect
import threading
from asyncio.log import logger
from collections import deque
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from ._goroutine import Goroutine, go
from ._runtime import call_in_loop
from ._waiter import CANCELLED, Parker, Solo, check_blocking_allowed

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


def _check_int(what: str, value: object) -> int:
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
        _check_int("WaitGroup.add() n", n)
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


# -- Group ------------------------------------------------------------------------------------


class Group:
    """Run goroutines as a group and wait for them all, as ``asyncio.TaskGroup`` does.

    ``async with gorun.Group() as g:`` then ``g.go(coro)`` starts *coro* as a goroutine
    (with [`gorun.go()`][gorun.go], so the group's goroutines spread over the workers). Leaving
    the block waits until all of them have finished. The first one to fail (raise an
    exception other than CancelledError) cancels the others, and the task running the
    block too, to abort the rest of its body; the block then raises an
    `ExceptionGroup` (a `BaseExceptionGroup` if need be) of every failure.
    If the body itself raises, or the task running it is cancelled, the goroutines are
    cancelled, waited for, and the error propagates as from a TaskGroup. ``KeyboardInterrupt``
    and ``SystemExit`` propagate as themselves.

    With *limit*, at most that many of the group's goroutines run at once; ``g.go()``
    never waits: it queues the coroutine, which starts (as a goroutine) when a slot
    frees.

    Once the group is cancelling (a goroutine failed, the body raised, or the task
    running the block was cancelled), coroutines still queued are closed without running,
    and so is any coroutine passed to ``g.go()`` from then on. (An ``asyncio.TaskGroup``
    raises RuntimeError there instead; here a goroutine on another worker may fail while
    the body runs between two awaits, so that error would hit a body doing nothing wrong.)

    ``g.go()`` returns nothing: collect results through the coroutines themselves (a
    list, a [`gorun.Chan`][gorun.Chan]), as with Go's ``errgroup``. Goroutines of the group may
    add more work with ``g.go()`` until the group has finished.

    Args:
        limit: The most goroutines of this group that run at once; None for no limit.

    Raises:
        TypeError: *limit* is not an int or None.
        ValueError: *limit* is less than 1.
    """

    __slots__ = (
        "__weakref__",
        "_aborting",
        "_active",
        "_base_error",
        "_entered",
        "_errors",
        "_exit_parker",
        "_exiting",
        "_finished",
        "_limit",
        "_lock",
        "_loop",
        "_parent_cancel_requested",
        "_parent_cancelled",
        "_parent_task",
        "_queue",
        "_running",
    )

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None:
            _check_int("Group limit", limit)
            if limit < 1:
                raise ValueError(f"Group limit must be at least 1, got {limit}")
        self._limit = limit
        self._lock = threading.Lock()
        # Guarded by self._lock (children finish on other threads).
        self._entered = False
        self._finished = False
        self._aborting = False
        self._active = 0  # slots taken: goroutines started (or starting) and not done
        self._running: set[Goroutine[Any]] = set()
        self._queue: deque[tuple[Coroutine[Any, Any, Any], str | None,
                                 contextvars.Context]] = deque()
        self._errors: list[BaseException] = []
        self._base_error: BaseException | None = None
        self._exit_parker: Parker | None = None
        self._parent_cancel_requested = False
        # Set once by __aenter__ (under the lock, before any child can exist).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parent_task: asyncio.Task[Any] | None = None
        # Only touched on the parent's loop thread.
        self._exiting = False
        self._parent_cancelled = False

    def __repr__(self) -> str:
        with self._lock:
            info = [f"running={self._active}"]
            if self._queue:
                info.append(f"queued={len(self._queue)}")
            if self._limit is not None:
                info.append(f"limit={self._limit}")
            if self._errors:
                info.append(f"errors={len(self._errors)}")
            if self._finished:
                info.append("finished")
            elif self._aborting:
                info.append("cancelling")
            elif self._entered:
                info.append("entered")
        return f"<Group {' '.join(info)} at {id(self):#x}>"

    @property
    def limit(self) -> int | None:
        """The most goroutines of this group that run at once (None: no limit)."""
        return self._limit

    async def __aenter__(self) -> Group:
        """Enter the group (once only); return it.

        Raises:
            RuntimeError: the group was entered before, or there is no current task.
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError(f"{self!r} cannot determine the parent task")
        loop = asyncio.get_running_loop()
        with self._lock:
            entered = self._entered
            if not entered:
                # Set before g.go() can succeed (from this or any other thread).
                self._loop, self._parent_task, self._entered = loop, task, True
        if entered:
            raise RuntimeError(f"{self!r} has already been entered")
        return self

    def go(self, coro: Coroutine[Any, Any, object], /, *, name: str | None = None) -> None:
        """Start *coro* as a goroutine of this group, or queue it while the limit is reached.

        Args:
            coro: A coroutine object.
            name: The goroutine's name.

        Raises:
            TypeError: *coro* is not a coroutine object, or *name* is not a str.
            RuntimeError: the group has not been entered or has finished, or the runtime
                is shutting down. *coro* is closed.
        """
        if not isinstance(coro, collections.abc.Coroutine):
            raise TypeError(f"Group.go() needs a coroutine object, got {type(coro).__name__}")
        error = None
        if name is not None and not isinstance(name, str):
            coro.close()
            raise TypeError(f"Group.go() name must be a str or None, got {type(name).__name__}")
        with self._lock:
            if not self._entered:
                error = "has not been entered"
            elif self._finished:
                error = "has finished"
            elif self._aborting:
                error = ""  # cancelling: the coroutine is dropped, as the queued ones were
            elif self._limit is not None and self._active >= self._limit:
                self._queue.append((coro, name, contextvars.copy_context()))
                return
            else:
                self._active += 1
        if error is not None:
            coro.close()
            if not error:
                return
            raise RuntimeError(f"{self!r} {error}")
        try:
            self._launch(coro, name, None)
        except BaseException:
            self._settle(None, None)  # give the slot back (to a queued coroutine, maybe)
            raise

    # -- children ------------------------------------------------------------------------

    def _launch(
        self, coro: Coroutine[Any, Any, Any], name: str | None, ctx: contextvars.Context | None
    ) -> None:
        # Start a goroutine in a slot already taken; raises (coro closed) if go() fails.
        g = go(coro, name=name) if ctx is None else ctx.run(go, coro, name=name)
        with self._lock:
            self._running.add(g)
            cancel = self._aborting
        if cancel:
            g.cancel()
        if not g._on_done(functools.partial(self._on_child_done, g)):
            self._on_child_done(g)

    def _on_child_done(self, g: Goroutine[Any]) -> None:
        # On the thread that finished g, inside its completion: must not raise.
        error = None if g.cancelled() else g.exception()
        self._settle(g, error)

    def _settle(self, g: Goroutine[Any] | None, error: BaseException | None) -> None:
        # A slot frees (g finished, or failed to start): record its error, hand the slot
        # to the next queued coroutine, or wake __aexit__ when the last one is done.
        while True:
            to_cancel: list[Goroutine[Any]] = []
            dropped: list[Coroutine[Any, Any, Any]] = []
            cancel_parent = False
            wake = None
            nxt = None
            with self._lock:
                if g is not None:
                    self._running.discard(g)
                if error is not None:
                    self._errors.append(error)
                    if _is_base_error(error) and self._base_error is None:
                        self._base_error = error
                    if not self._aborting and not self._parent_cancel_requested:
                        to_cancel, dropped = self._abort_locked()
                        self._parent_cancel_requested = cancel_parent = True
                if self._queue and not self._aborting:
                    nxt = self._queue.popleft()  # the slot passes to it
                else:
                    self._active -= 1
                    if self._active == 0 and not self._queue:
                        wake, self._exit_parker = self._exit_parker, None
            self._cancel(to_cancel, dropped)
            if cancel_parent:
                assert self._loop is not None
                call_in_loop(self._loop, self._cancel_parent)
            if wake is not None:
                wake.wake()
            if nxt is None:
                return
            try:
                self._launch(*nxt)
            except BaseException as exc:  # the runtime is shutting down
                g, error = None, exc
            else:
                return

    def _abort_locked(self) -> tuple[list[Goroutine[Any]], list[Coroutine[Any, Any, Any]]]:
        self._aborting = True
        dropped = [coro for coro, _, _ in self._queue]
        self._queue.clear()
        return list(self._running), dropped

    def _abort(self) -> None:
        with self._lock:
            to_cancel, dropped = self._abort_locked()
        self._cancel(to_cancel, dropped)

    @staticmethod
    def _cancel(to_cancel: list[Goroutine[Any]], dropped: list[Coroutine[Any, Any, Any]]) -> None:
        for coro in dropped:
            coro.close()
        for g in to_cancel:
            g.cancel()

    def _cancel_parent(self) -> None:
        # On the parent's loop: abort the body, unless it has already finished (then
        # __aexit__ is waiting anyway, and it will not have to uncancel the task).
        task = self._parent_task
        if self._exiting or task is None or task.done():
            return
        self._parent_cancelled = True
        task.cancel()

    # -- exit ----------------------------------------------------------------------------

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Wait for every goroutine of the group; raise their failures as a group.

        Raises:
            BaseExceptionGroup: one or more goroutines failed, or the body raised (its
                exception is included); an ExceptionGroup when all are Exceptions.
            KeyboardInterrupt: or SystemExit, from the body or a goroutine, as itself.
            asyncio.CancelledError: the task running the block was cancelled (and no
                goroutine failed).
        """
        assert self._loop is not None
        assert self._parent_task is not None
        self._exiting = True  # on the parent's loop thread, where _cancel_parent reads it
        if exc is not None and _is_base_error(exc):
            with self._lock:
                if self._base_error is None:
                    self._base_error = exc
        propagate_cancel: BaseException | None = None
        if et is not None and issubclass(et, asyncio.CancelledError):
            propagate_cancel = exc
        if et is not None:
            with self._lock:
                aborting = self._aborting
            if not aborting:
                self._abort()
        while True:
            with self._lock:
                if self._active == 0 and not self._queue:
                    self._finished = True
                    break
                parker = Parker(self._loop)
                self._exit_parker = parker
            try:
                await parker.sleep()
            except asyncio.CancelledError as ex:
                with self._lock:
                    aborting = self._aborting
                if not aborting:
                    # The task running the block is cancelled while the group waits.
                    propagate_cancel = ex
                    self._abort()
        if self._parent_cancelled and self._parent_task.uncancel() == 0:
            # Our own cancel (to abort the body) is the only one: do not propagate it.
            propagate_cancel = None
        if self._base_error is not None:
            raise self._base_error
        errors = self._errors
        if propagate_cancel is not None and not errors:
            raise propagate_cancel
        if et is not None and not issubclass(et, asyncio.CancelledError):
            assert exc is not None
            errors.append(exc)
        if errors:
            try:
                raise BaseExceptionGroup("unhandled errors in a Group", errors) from None
            finally:
                self._errors = []


def _is_base_error(exc: BaseException) -> bool:
    return isinstance(exc, (SystemExit, KeyboardInterrupt))
