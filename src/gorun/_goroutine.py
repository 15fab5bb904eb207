"""Goroutines: ``go()`` and the [`Goroutine`][gorun.Goroutine] handle.

A goroutine is a coroutine that gorun starts, as an asyncio Task, on one of the runtime's
worker loops. Its life:

    PENDING  --(a worker claims it and creates its Task)-->  RUNNING  --(Task done)-->  DONE
    PENDING  --(cancel() before any worker claimed it)------------------------------>  DONE

Every transition happens under the goroutine's lock, so a cancel racing a start is
decided once: whoever replaces the goroutine's Context under that lock owns it (a worker
puts itself there, a cancel None; see ``Goroutine.__slots__``). Either the worker claimed
it first (the cancel is delivered to the Task on its loop) or
the cancel did (the coroutine is closed, never run, and the worker skips it). Once DONE,
the outcome (result, exception or cancellation) never changes, and the waiters collected
so far are notified exactly once, each on its own loop.

The lock is not the goroutine's own: goroutine N uses ``_LOCKS[N % len(_LOCKS)]``. A lock
per goroutine would cost about 90 bytes each (a tenth of a parked goroutine), for
critical sections a few attribute assignments long that seldom meet. Sharing is safe
because no critical section acquires anything else, calls out, or allocates an object
the cyclic garbage collector tracks (which could run a finalizer that touches another
goroutine of the same stripe): two goroutines on one stripe only take turns.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._compat import PLAIN_TASKS, creates_plain_tasks, task_factory_of
from ._current import current_runtime_var
from ._failure import Failure as _Failure
from ._guard import explain
from ._runtime import Runtime
from ._thread_state import current_worker, running_loop
from ._waiter import new_blocking, new_solo
from ._wakeup import call_in_loop

if TYPE_CHECKING:
    from ._worker import Worker

T = TypeVar("T")

#: A done goroutine's callbacks: no more can be added (see the slots of Goroutine).
_FINISHED: Any = ()
_Context = contextvars.Context

#: The state-machine locks, shared by stripes of goroutine ids (see the module docstring).
_LOCKS = tuple(threading.Lock() for _ in range(256))
_LOCK_MASK = len(_LOCKS) - 1
#: Added to the id a named goroutine keeps in ``_id``, to tell it from a stripe.
_NAMED = len(_LOCKS)

# Goroutine ids: itertools.count's __next__ is atomic, one C call under the GIL, and on
# free-threaded builds too (CPython gh-117657, from 3.13), so no lock is needed.
_next_id = Runtime._ids.__next__
_CancelledError = asyncio.CancelledError


class Goroutine(Generic[T]):
    """A handle on a goroutine started by [`go()`][gorun.go].

    Await it from a goroutine on any worker, or from any asyncio loop, to get its result
    (or its exception). From a plain thread, `wait()` blocks until it is done. As with
    an asyncio Task, an awaiter that is cancelled while waiting cancels the goroutine.
    """

    # Eight slots for the eleven names a goroutine's life needs: a handle is a tenth of
    # a parked goroutine, and a slot 8 bytes of it. Names never needed at once share a
    # slot, as a C union's members do (the second of each pair is an alias of the
    # first's slot, made below the class):
    #
    #   _context / _worker   its Context until claimed; then the Worker that claimed it
    #                        to start it, or None if a cancel claimed it first. PENDING
    #                        (and claimable) exactly while this holds a Context.
    #   _queued_at / _prev   when it was queued (perf_counter), while it waits to start;
    #                        then its neighbour in its worker's list of running
    #                        goroutines (see _start_on), None once it left the list.
    #   _value / _next       its coroutine, until claimed; then its other neighbour in
    #                        that list; once DONE, its result, or a _Failure for an
    #                        exception or a cancellation.
    #
    # _callbacks is _FINISHED exactly when it is DONE. The scheduler reads _queued_at
    # of the goroutines in its queues (unlocked, it catches the TypeError of one that
    # started meanwhile); the others are read under the goroutine's lock, by the thread
    # that owns the list, or (the dump) checked for their type first. (The type checker
    # is shown each name as a slot of its own, with its own type.)
    if TYPE_CHECKING:
        __slots__ = (
            "__weakref__", "_callbacks", "_context", "_id", "_name", "_next", "_prev",
            "_queued_at", "_task", "_value", "_worker",
        )
    else:
        __slots__ = (
            "__weakref__", "_callbacks", "_context", "_id", "_name", "_queued_at",
            "_task", "_value",
        )

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        name: str | None,
        context: contextvars.Context,
    ) -> None:
        self._name: str
        # Its lock stripe, ``id % 256``, when its name is "goroutine-<id>": the id is not
        # kept twice (its int is 32 bytes; a stripe is one of the small ints Python
        # shares). A named goroutine keeps ``id + _NAMED`` here: as large as that, it is
        # no stripe, and its stripe is the same. The id property undoes both.
        self._id: int
        n = _next_id()
        if name is None:
            self._id = n & _LOCK_MASK
            self._name = f"goroutine-{n}"
        else:
            self._id = n + _NAMED
            self._name = name
        # The slots' unions are described above __slots__.
        self._value: Any = coro
        # Its runtime rides in the context (go() put it there): see _cancel_queued().
        self._context: contextvars.Context | Worker | None = context
        self._worker: Worker | contextvars.Context | None
        self._task: asyncio.Task[T] | None = None
        # Waiters to notify once done; None until the first one comes (most never do).
        self._callbacks: list[Callable[[], object]] | None = None
        self._queued_at: float = 0.0
        self._prev: Goroutine[Any] | None
        self._next: Goroutine[Any] | None

    @property
    def id(self) -> int:
        """The goroutine's number: unique in the process, in the order go() was called."""
        n = self._id
        return int(self._name[10:]) if n < _NAMED else n - _NAMED  # "goroutine-<id>"

    @property
    def name(self) -> str:
        """The goroutine's name: the ``name`` given to [`go()`][gorun.go], or
        ``"goroutine-<id>"``. Assigning it renames the handle, not the running Task
        (``asyncio.current_task().set_name()`` does that)."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a goroutine's name must be a str, got {type(name).__name__}")
        if self._id < _NAMED:
            self._id = self.id + _NAMED  # the id was read from the old name: keep it
        self._name = name

    def _started_on(self) -> Worker | None:
        # The worker that claimed it to start it; None if none did (yet).
        worker = self._worker
        return None if worker.__class__ is _Context else worker

    def __repr__(self) -> str:
        worker = self._started_on()
        where = "" if worker is None else f" on worker {worker.index}"
        state = "pending" if worker is None else "running"
        if self._callbacks is _FINISHED:
            value = self._value
            if value.__class__ is not _Failure:
                state = "finished"
            elif isinstance(value.exc, asyncio.CancelledError):
                state = "cancelled"
            else:
                state = f"failed with {type(value.exc).__name__}"
        return f"<Goroutine id={self.id} name={self._name!r} {state}{where}>"

    # -- queries ----------------------------------------------------------------------------

    def done(self) -> bool:
        """True once the goroutine has returned, raised or been cancelled."""
        return self._callbacks is _FINISHED

    def cancelled(self) -> bool:
        """True if the goroutine ended by cancellation."""
        value = self._value  # a _Failure only once DONE (a neighbour while it runs)
        return value.__class__ is _Failure and isinstance(value.exc, _CancelledError)

    def result(self) -> T:
        """The goroutine's return value; raises its exception if it raised one.

        Raises:
            asyncio.InvalidStateError: it is not done yet.
            asyncio.CancelledError: it was cancelled.
        """
        if self._callbacks is not _FINISHED:
            raise asyncio.InvalidStateError(f"{self!r} is not done yet")
        return self._outcome()

    def exception(self) -> BaseException | None:
        """The exception the goroutine raised, or None if it returned.

        Raises:
            asyncio.InvalidStateError: it is not done yet.
            asyncio.CancelledError: it was cancelled.
        """
        if self._callbacks is not _FINISHED:
            raise asyncio.InvalidStateError(f"{self!r} is not done yet")
        value = self._value
        if value.__class__ is not _Failure:
            return None
        value.armed = False  # retrieved: nothing to report
        if isinstance(value.exc, asyncio.CancelledError):
            raise value.exc
        return value.exc

    def _outcome(self) -> T:
        value = self._value
        if value.__class__ is _Failure:
            value.armed = False  # retrieved: nothing to report
            raise value.exc
        return value  # type: ignore[no-any-return]

    # -- cancellation ---------------------------------------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        """Ask the goroutine to stop; safe from any thread.

        A goroutine that has not started yet is cancelled at once and its coroutine never
        runs. A running one gets `asyncio.CancelledError` at its current ``await``
        on its own loop, as ``Task.cancel`` does.

        Returns:
            False if it was already done, else True.
        """
        if self._context.__class__ is _Context and self._cancel_queued(msg):
            return True
        with _LOCKS[self._id & _LOCK_MASK]:
            done = self._callbacks is _FINISHED
            worker = self._started_on()  # None: a cancel claimed it (a claim is final)
        if done:
            return False
        if worker is None:
            return True  # PENDING, its coroutine claimed: another cancel is finishing it
        if current_worker() is worker and self._task is not None:
            return self._task.cancel(msg)
        return worker.post(self._cancel_task, msg) or not self.done()

    def _cancel_task(self, msg: Any) -> None:
        if self._task is not None:
            self._task.cancel(msg)

    def _cancel_queued(self, msg: Any) -> bool:
        # Cancel a goroutine no worker has started; False if it was claimed before us.
        # The error is made before taking the lock: nothing is allocated inside it.
        exc = _CancelledError(msg) if msg is not None else _CancelledError()
        with _LOCKS[self._id & _LOCK_MASK]:
            context = self._context
            if context.__class__ is not _Context:
                return False
            self._context = None  # the claim (see __slots__)
            coro: Coroutine[Any, Any, T] = self._value
        coro.close()
        # Its runtime: go() set it in the goroutine's context, which no code has run in.
        runtime = context.get(current_runtime_var)
        assert runtime is not None
        runtime.goroutine_exited()
        self._complete(None, exc)
        return True

    # -- start and finish (on the worker's thread) ---------------------------------------

    def _start_on(self, worker: Worker) -> asyncio.Task[T] | None:
        # acquire() and release() here and in _complete(), which run per goroutine, not
        # `with`: that costs twice as much on CPython 3.11 (about 2,000 instructions).
        lock = _LOCKS[self._id & _LOCK_MASK]
        lock.acquire()
        try:
            context: Any = self._context
            if context.__class__ is not _Context:
                return None  # cancelled while queued
            self._worker = worker  # the claim (see __slots__): RUNNING
            coro: Coroutine[Any, Any, T] = self._value
        finally:
            lock.release()
        loop = worker.loop
        try:
            direct = PLAIN_TASKS.get(type(loop))
            if direct is None:
                direct = creates_plain_tasks(type(loop))
            factory = task_factory_of(loop) if direct else loop.get_task_factory()
            if factory is not None:
                # A task factory may take neither a context (before 3.11 none did) nor,
                # from 3.14, a name: make the Task inside the goroutine's context, which
                # it copies, then name it, as asyncio itself did up to 3.13.
                task = context.run(loop.create_task, coro)
                task.set_name(self._name)
            elif direct:
                task = asyncio.Task(coro, loop=loop, name=self._name, context=context)
            else:
                task = loop.create_task(coro, name=self._name, context=context)
        except BaseException as exc:
            coro.close()
            worker.runtime.goroutine_exited()
            self._complete(None, exc)
            return None
        self._task = task
        worker.started += 1
        # Linked into its worker's list of running goroutines, newest first, until its
        # Task is done: the reference that keeps it alive when nobody holds its handle
        # and it waits on something nothing else references (as Go keeps a blocked
        # goroutine). Only the worker's own thread links and unlinks.
        head = worker.running
        self._prev = None  # (its time in the queue until now)
        self._next = head  # (its coroutine until now, which the Task holds)
        if head is not None:
            head._prev = self
        worker.running = self
        # The handle itself is the Task's done callback (see __call__): no bound method
        # per goroutine. It runs in the goroutine's own context, which nothing else
        # enters once the Task is done, rather than in a copy of the current one.
        task.add_done_callback(self, context=context)
        return task

    def _on_task_done(self, task: asyncio.Task[T]) -> None:
        # Runs on the Task's loop, from its done callback or from a same-loop awaiter
        # that got there first: whichever comes first records the outcome.
        if self._callbacks is _FINISHED:
            return
        worker: Any = self._worker  # set by _start_on before the Task existed
        worker.finished += 1
        prev, after = self._prev, self._next  # unlinked from the running list
        if prev is None:
            worker.running = after
        else:
            prev._next = after
        if after is not None:
            after._prev = prev
        self._prev = self._next = None
        worker.runtime.goroutine_exited()
        try:
            error = task.exception()  # also tells the Task that its exception was retrieved
        except _CancelledError as cancelled:
            self._complete(None, cancelled)
            return
        if error is None:
            self._complete(task.result(), None)
        else:
            # asyncio's "attached to a different loop" errors get gorun's explanation.
            explain(error, worker.index)
            self._complete(None, error)

    #: The Task's done callback (internal; see _start_on).
    __call__ = _on_task_done

    def _complete(self, result: T | None, exc: BaseException | None) -> None:
        value: Any = result
        failure = None  # made before taking the lock: nothing is allocated inside it
        if exc is not None:
            worker = self._started_on()
            loop = None if worker is None else worker.loop
            value = failure = _Failure(exc, loop, not isinstance(exc, _CancelledError))
        lock = _LOCKS[self._id & _LOCK_MASK]
        lock.acquire()  # not `with`: see _start_on()
        try:
            self._value = value
            callbacks = self._callbacks
            self._callbacks = _FINISHED  # DONE
        finally:
            lock.release()
        if failure is not None and failure.armed:
            failure.text = repr(self)
        if callbacks is not None:
            for notify in callbacks:
                notify()

    # -- waiting --------------------------------------------------------------------------

    def _on_done(self, notify: Callable[[], object]) -> bool:
        # Register *notify* to run (on the finishing thread) once done; False if done now.
        new = [notify]  # made before taking the lock: nothing is allocated inside it
        lock = _LOCKS[self._id & _LOCK_MASK]
        lock.acquire()  # not `with`: see _start_on()
        try:
            callbacks = self._callbacks
            if callbacks is _FINISHED:
                return False
            if callbacks is None:
                self._callbacks = new
            else:
                callbacks.append(notify)
            return True
        finally:
            lock.release()

    def _forget(self, notify: Callable[[], object]) -> None:
        # Unregister *notify* (a waiter that gave up), if it has not been run.
        with _LOCKS[self._id & _LOCK_MASK]:
            callbacks = self._callbacks
            if isinstance(callbacks, list) and notify in callbacks:  # not _FINISHED
                callbacks.remove(notify)

    def add_done_callback(
        self, fn: Callable[[Goroutine[T]], object], *, context: contextvars.Context | None = None
    ) -> None:
        """Call ``fn(goroutine)`` once it is done.

        Called from a thread that runs an event loop, *fn* runs on that loop (as with an
        asyncio future); called from a plain thread, *fn* runs on the thread that finishes
        the goroutine (or at once, on this thread, if it is already done).
        """
        ctx = context if context is not None else contextvars.copy_context()
        loop = running_loop()

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

        Raises its exception if it raised one, `asyncio.CancelledError` if it was
        cancelled, and `TimeoutError` if *timeout* seconds pass first.

        Raises:
            RuntimeError: called on a thread that is running an event loop, which this
                would freeze; ``await`` the goroutine there instead.
        """
        if running_loop() is not None:
            raise RuntimeError(
                "Goroutine.wait() would block the event loop running on this thread; "
                "use 'await goroutine' instead"
            )
        if self._callbacks is not _FINISHED:
            event = threading.Event()
            if self._on_done(event.set) and not event.wait(timeout):
                self._forget(event.set)
                raise TimeoutError(f"{self!r} did not finish within {timeout} seconds")
        return self._outcome()

    def __await__(self) -> Generator[Any, None, T]:
        if self._callbacks is not _FINISHED:  # else, from any loop: nothing to wait for
            task = self._task
            if task is None or task.get_loop() is not running_loop():
                return (yield from self._await_remote())
            # Same loop: await the Task itself, the cheapest hand-off asyncio has. The
            # waiter only tells gorun.dump() what this wait is, and since when. A Task
            # that is done already (its done callback, which records the outcome, not
            # run yet) has nothing to wait for: awaiting goroutines in the order they
            # were started, most are.
            if not task.done():
                waiter = new_blocking(task, "awaiting goroutine", self)  # noqa: F841
                try:
                    yield from task.__await__()
                except BaseException:
                    if not task.done():
                        raise  # the awaiter itself was cancelled
            # Record the outcome now if the Task's done callback has not run yet, and
            # raise our stored exception: a cancelled Task makes a new CancelledError
            # (without its message) each time it is asked.
            if self._callbacks is not _FINISHED:
                self._on_task_done(task)
        value = self._value  # _outcome(), inline: this runs per await
        if value.__class__ is _Failure:  # (tests/test_copies.py drives both)
            value.armed = False
            raise value.exc
        return value  # type: ignore[no-any-return]

    def _await_remote(self) -> Generator[Any, None, T]:
        # A generator, not a coroutine, so that the await chain gorun.dump() walks goes
        # on through it to its waiter (a coroutine's __await__ wrapper hides its frame).
        loop = asyncio.get_running_loop()
        while True:
            waiter = new_solo(loop, self, "awaiting goroutine")
            if not self._on_done(waiter):  # calling a waiter wakes it
                break
            try:
                yield from waiter.fut
            except asyncio.CancelledError as exc:
                if self.done():
                    raise
                # As when awaiting a Task: the awaiter's cancellation cancels the
                # goroutine, and the awaiter goes on waiting for it to end.
                self.cancel(exc.args[0] if exc.args else None)
                continue
            break
        return self._outcome()


# The slots' second names (see Goroutine.__slots__): a slot's descriptor, stored under
# another name, reads and writes the same slot, at the same speed.
for _alias, _slot in (("_worker", "_context"), ("_prev", "_queued_at"), ("_next", "_value")):
    setattr(Goroutine, _alias, Goroutine.__dict__[_slot])
