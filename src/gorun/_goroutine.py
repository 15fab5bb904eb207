"""Goroutines: ``go()`` and the :class:`Goroutine` handle.

A goroutine is a coroutine that gorun starts, as an asyncio Task, on one of the runtime's
worker loops. Its life:

    PENDING  --(a worker claims it and creates its Task)-->  RUNNING  --(Task done)-->  DONE
    PENDING  --(cancel() before any worker claimed it)------------------------------>  DONE

Every transition happens under ``self._lock``, so a cancel racing a start is decided
once: either the worker claimed it first (the cancel is delivered to the Task on its
loop) or the cancel did (the coroutine is closed, never run, and the worker skips it).
Once DONE, the outcome (result, exception or cancellation) never changes, and the
waiters collected so far are notified exactly once, each on its own loop.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import functools
import threading
from asyncio.log import logger
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._guard import explain
from ._runtime import Runtime, call_in_loop, current_runtime, current_runtime_var, default_runtime
from ._worker import current_worker

if TYPE_CHECKING:
    from ._worker import Worker

T = TypeVar("T")

_PENDING = "pending"
_RUNNING = "running"
_DONE = "done"


class Goroutine(Generic[T]):
    """A handle on a goroutine started by :func:`go`.

    Await it from a goroutine on any worker, or from any asyncio loop, to get its result
    (or its exception). From a plain thread, :meth:`wait` blocks until it is done. As with
    an asyncio Task, an awaiter that is cancelled while waiting cancels the goroutine.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_cancel_msg",
        "_context",
        "_coro",
        "_event",
        "_exception",
        "_lock",
        "_log_exception",
        "_queued_at",
        "_result",
        "_runtime",
        "_state",
        "_task",
        "_worker",
        "id",
        "name",
    )

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None,
        runtime: Runtime,
        context: contextvars.Context,
    ) -> None:
        self.id: int = Runtime.next_id()
        #: The goroutine's name: the ``name`` given to :func:`go`, or ``"goroutine-<id>"``.
        self.name: str = name if name is not None else f"goroutine-{self.id}"
        self._coro: Coroutine[Any, Any, T] | None = coro
        self._context = context
        self._runtime = runtime
        self._lock = threading.Lock()
        self._state = _PENDING
        self._task: asyncio.Task[T] | None = None
        self._worker: Worker | None = None
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._log_exception = False
        self._callbacks: list[Callable[[], object]] = []
        self._event: threading.Event | None = None
        self._queued_at = 0.0
        self._cancel_msg: Any = None

    def __repr__(self) -> str:
        where = f" on worker {self._worker.index}" if self._worker is not None else ""
        state = self._state
        if state == _DONE:
            if self._exception is None:
                state = "finished"
            elif isinstance(self._exception, asyncio.CancelledError):
                state = "cancelled"
            else:
                state = f"failed with {type(self._exception).__name__}"
        return f"<Goroutine id={self.id} name={self.name!r} {state}{where}>"

    def __del__(self) -> None:
        if not self._log_exception:
            return
        exc = self._exception
        loop = self._worker.loop if self._worker is not None else None
        context = {
            "message": "Goroutine exception was never retrieved",
            "exception": exc,
            "goroutine": self,
        }
        if loop is not None and not loop.is_closed():
            loop.call_exception_handler(context)
        else:
            _default_handler(context)

    # -- queries ----------------------------------------------------------------------------

    def done(self) -> bool:
        """True once the goroutine has returned, raised or been cancelled."""
        return self._state == _DONE

    def cancelled(self) -> bool:
        """True if the goroutine ended by cancellation."""
        return self._state == _DONE and isinstance(self._exception, asyncio.CancelledError)

    def result(self) -> T:
        """The goroutine's return value; raises its exception if it raised one.

        Raises:
            asyncio.InvalidStateError: it is not done yet.
            asyncio.CancelledError: it was cancelled.
        """
        if self._state != _DONE:
            raise asyncio.InvalidStateError(f"{self!r} is not done yet")
        self._log_exception = False
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        """The exception the goroutine raised, or None if it returned.

        Raises:
            asyncio.InvalidStateError: it is not done yet.
            asyncio.CancelledError: it was cancelled.
        """
        if self._state != _DONE:
            raise asyncio.InvalidStateError(f"{self!r} is not done yet")
        self._log_exception = False
        if isinstance(self._exception, asyncio.CancelledError):
            raise self._exception
        return self._exception

    def _outcome(self) -> T:
        self._log_exception = False
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    # -- cancellation ---------------------------------------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        """Ask the goroutine to stop; safe from any thread.

        A goroutine that has not started yet is cancelled at once and its coroutine never
        runs. A running one gets :class:`asyncio.CancelledError` at its current ``await``
        on its own loop, as ``Task.cancel`` does.

        Returns:
            False if it was already done, else True.
        """
        with self._lock:
            state = self._state
            if state == _DONE:
                return False
            if state == _RUNNING:
                worker = self._worker
        if state == _PENDING:
            if self._cancel_queued(msg):
                return True
            return self.cancel(msg)  # a worker claimed it meanwhile: cancel the Task
        assert worker is not None
        if current_worker() is worker and self._task is not None:
            return self._task.cancel(msg)
        return worker.post(self._cancel_task, msg) or not self.done()

    def _cancel_task(self, msg: Any) -> None:
        if self._task is not None:
            self._task.cancel(msg)

    def _cancel_queued(self, msg: Any) -> bool:
        # Cancel a goroutine no worker has started; False if one claimed it first.
        with self._lock:
            if self._state != _PENDING:
                return False
            coro = self._coro
            self._coro = None
        if coro is not None:
            coro.close()
        self._runtime.goroutine_exited(self)
        self._complete(None, asyncio.CancelledError(msg) if msg is not None
                       else asyncio.CancelledError())
        return True

    # -- start and finish (on the worker's thread) ---------------------------------------

    def _start(self, worker: Worker) -> bool:
        with self._lock:
            if self._state != _PENDING:
                return False  # cancelled while queued
            self._state = _RUNNING
            self._worker = worker
            coro = self._coro
            self._coro = None
        assert coro is not None
        try:
            task = worker.loop.create_task(coro, name=self.name, context=self._context)
        except BaseException as exc:
            coro.close()
            self._runtime.goroutine_exited(self)
            self._complete(None, exc)
            return False
        self._task = task
        worker.live[self.id] = self
        worker.started += 1
        task.add_done_callback(self._on_task_done)
        return True

    def _on_task_done(self, task: asyncio.Task[T]) -> None:
        # Runs on the Task's loop, from its done callback or from a same-loop awaiter
        # that got there first: whichever comes first records the outcome.
        if self._state == _DONE:
            return
        worker = self._worker
        if worker is not None:
            worker.live.pop(self.id, None)
        self._runtime.goroutine_exited(self)
        if task.cancelled():
            try:
                task.result()
            except asyncio.CancelledError as cancelled:
                self._complete(None, cancelled)
            return
        error = task.exception()  # also tells the Task that its exception was retrieved
        if error is None:
            self._complete(task.result(), None)
        else:
            # asyncio's "attached to a different loop" errors get gorun's explanation.
            explain(error, worker.index if worker is not None else None)
            self._complete(None, error)

    def _complete(self, result: T | None, exc: BaseException | None) -> None:
        with self._lock:
            self._result = result
            self._exception = exc
            self._log_exception = exc is not None and not isinstance(
                exc, asyncio.CancelledError
            )
            self._state = _DONE
            callbacks = self._callbacks
            self._callbacks = []
            event = self._event
        if event is not None:
            event.set()
        for notify in callbacks:
            notify()

    # -- waiting --------------------------------------------------------------------------

    def _on_done(self, notify: Callable[[], object]) -> bool:
        # Register *notify* to run (on the finishing thread) once done; False if done now.
        with self._lock:
            if self._state == _DONE:
                return False
            self._callbacks.append(notify)
            return True

    def add_done_callback(
        self, fn: Callable[[Goroutine[T]], object], *, context: contextvars.Context | None = None
    ) -> None:
        """Call ``fn(goroutine)`` once it is done.

        Called from a thread that runs an event loop, *fn* runs on that loop (as with an
        asyncio future); called from a plain thread, *fn* runs on the thread that finishes
        the goroutine (or at once, on this thread, if it is already done).
        """
        ctx = context if context is not None else contextvars.copy_context()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None

        def run() -> None:
            ctx.run(fn, self)

        if loop is None:
            if not self._on_done(run):
                run()
            return

        def notify() -> None:
            call_in_loop(loop, run)

        if not self._on_done(notify):
            loop.call_soon(run)

    def wait(self, timeout: float | None = None) -> T:
        """Block this plain thread until the goroutine is done; return its result.

        Raises its exception if it raised one, :class:`asyncio.CancelledError` if it was
        cancelled, and :class:`TimeoutError` if *timeout* seconds pass first.

        Raises:
            RuntimeError: called on a thread that is running an event loop, which this
                would freeze; ``await`` the goroutine there instead.
        """
        if _running_loop() is not None:
            raise RuntimeError(
                "Goroutine.wait() would block the event loop running on this thread; "
                "use 'await goroutine' instead"
            )
        if self._state != _DONE:
            with self._lock:
                if self._state != _DONE and self._event is None:
                    self._event = threading.Event()
                event = self._event
            if event is not None and not event.wait(timeout):
                raise TimeoutError(f"{self!r} did not finish within {timeout} seconds")
        return self._outcome()

    def __await__(self) -> Generator[Any, None, T]:
        task = self._task
        if task is not None and task.get_loop() is _running_loop():
            # Same loop: await the Task itself, the cheapest hand-off asyncio has.
            try:
                yield from task.__await__()
            except BaseException:
                if not task.done():
                    raise  # the awaiter itself was cancelled
            # Record the outcome now if the Task's done callback has not run yet, and
            # raise our stored exception: a cancelled Task makes a new CancelledError
            # (without its message) each time it is asked.
            self._on_task_done(task)
            return self._outcome()
        return (yield from self._await_remote().__await__())

    async def _await_remote(self) -> T:
        loop = asyncio.get_running_loop()
        while True:
            fut = loop.create_future()
            if not self._on_done(functools.partial(call_in_loop, loop, _wake, fut)):
                break
            try:
                await fut
            except asyncio.CancelledError as exc:
                if self.done():
                    raise
                # As when awaiting a Task: the awaiter's cancellation cancels the
                # goroutine, and the awaiter goes on waiting for it to end.
                self.cancel(exc.args[0] if exc.args else None)
                continue
            break
        return self._outcome()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _default_handler(context: dict[str, Any]) -> None:
    # No loop left to ask: log as asyncio's default exception handler does.
    exc = context.get("exception")
    exc_info = (type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else False
    logger.error("%s\ngoroutine: %r", context["message"], context.get("goroutine"),
                 exc_info=exc_info)


def go(
    coro: Coroutine[Any, Any, T], /, *, name: str | None = None, local: bool = False
) -> Goroutine[T]:
    """Start *coro* as a goroutine and return its handle at once.

    From a goroutine (or the code running on a :class:`gorun.Loop`), the new goroutine
    joins the caller's runtime: it first waits on the caller's own worker, where it starts
    as soon as the caller yields, and an idle worker may take it while it has not started.
    From a plain thread started by a goroutine's ``asyncio.to_thread``, it joins that
    goroutine's runtime (the context carries it). From any other plain thread, or an event
    loop that is not gorun's, it goes to the process-wide default runtime, started on
    first use.

    Args:
        coro: A coroutine object, such as ``fetch(url)``.
        name: A name shown in reprs, ``asyncio.current_task().get_name()`` and dumps.
        local: Start it now on the caller's own loop and keep it there, for code that uses
            objects bound to that loop (a client session, a lock, a transport).

    Raises:
        TypeError: *coro* is not a coroutine object, or *name* is not a str.
        RuntimeError: ``local=True`` outside a gorun loop, or the runtime is shutting down.
    """
    if not isinstance(coro, collections.abc.Coroutine):
        hint = ""
        if callable(coro):
            hint = f"; did you mean go({getattr(coro, '__name__', 'fn')}(...))?"
        raise TypeError(f"go() needs a coroutine object, got {type(coro).__name__}{hint}")
    try:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"go() name must be a str or None, got {type(name).__name__}")
        worker = current_worker()
        if local:
            if worker is None:
                raise RuntimeError(
                    "go(local=True) keeps a goroutine on the caller's gorun loop, but no "
                    "gorun loop runs on this thread; use asyncio.create_task() on a "
                    "foreign loop, or call go() without local=True"
                )
            runtime = worker.runtime
        elif worker is not None:
            runtime = worker.runtime
        else:
            runtime = current_runtime() or default_runtime()
        context = contextvars.copy_context()
        context.run(current_runtime_var.set, runtime)
        g: Goroutine[T] = Goroutine(coro, name=name, runtime=runtime, context=context)
        if local:
            assert worker is not None
            runtime.start_local(g, worker)
        else:
            runtime.spawn(g, worker)
    except BaseException:
        coro.close()
        raise
    return g
