"""``gorun.Group``: a TaskGroup whose children are goroutines, spread over the workers.

The group's state (its goroutines, its errors, whether it is closing) is guarded by a
``threading.Lock``, since its goroutines finish on their own workers' threads.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import functools
import threading
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from ._config import check_int
from ._go import go
from ._goroutine import Goroutine
from ._waiter import Parker, new_parker
from ._wakeup import call_in_loop

T = TypeVar("T")


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
            check_int("Group limit", limit)
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
            self._free_slot(None, None)  # give the slot back (to a queued coroutine, maybe)
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
        self._free_slot(g, error)

    def _free_slot(self, g: Goroutine[Any] | None, error: BaseException | None) -> None:
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
        propagate_cancel = await self._wait_all(propagate_cancel)
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


    async def _wait_all(self, propagate_cancel: BaseException | None) -> BaseException | None:
        # Wait until no goroutine of the group runs or is queued. Returns the cancellation
        # to propagate: *propagate_cancel*, or the one that hit the task running the block
        # while it waited here (which aborts the group).
        assert self._loop is not None
        while True:
            with self._lock:
                if self._active == 0 and not self._queue:
                    self._finished = True
                    return propagate_cancel
                parker = new_parker(Parker, self._loop, "Group wait", self)
                self._exit_parker = parker
            try:
                await parker.fut
            except asyncio.CancelledError as ex:
                with self._lock:
                    aborting = self._aborting
                if not aborting:
                    # The task running the block is cancelled while the group waits.
                    propagate_cancel = ex
                    self._abort()

def _is_base_error(exc: BaseException) -> bool:
    return isinstance(exc, (SystemExit, KeyboardInterrupt))
