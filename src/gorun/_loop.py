"""The home loop ([`Loop`][gorun.Loop]), ``run``, the loop factory and the event-loop policy."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import signal
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._compat import PLAIN_CREATE_TASK, POLICY_BASE
from ._config import resolve_deadlock, resolve_loop, resolve_procs
from ._current import current_runtime_var
from ._deadlock import DEADLOCK_MARKER, Deadlock, DeadlockWatch
from ._dump import print_dump
from ._runtime import Runtime
from ._selector import ParkingSelector, WorkerLoop
from ._thread_state import running_loop, set_current_worker

T = TypeVar("T")


if TYPE_CHECKING:
    # What a Loop offers is asyncio's full event loop API, whichever kind it is made of
    # (typeshed's AbstractEventLoop declares it all abstract).
    _LoopAPI = asyncio.BaseEventLoop
else:
    _LoopAPI = asyncio.AbstractEventLoop


class Loop(_LoopAPI):
    """An asyncio event loop that is the home loop of a gorun runtime.

    It runs on the thread that runs it, like any asyncio loop, and is worker 0 of a
    runtime with *procs* workers: the other ``procs - 1`` workers are event loops on
    threads of their own, started with the loop and joined when it closes. Goroutines
    started with [`gorun.go()`][gorun.go] from code on this loop spread over all of them.

    Closing the loop (``asyncio.run`` does it) cancels every goroutine still running,
    waits for them to finish, and joins every worker thread.

    Every worker's loop, this one included, is of the kind *loop* names: asyncio's
    selector event loop (an instance of this class is then also an
    ``asyncio.BaseEventLoop``), or uvloop's (then also a ``uvloop.Loop``). A subclass of
    this class is made concrete the same way.

    Args:
        procs: Number of workers, this loop included; default ``GORUN_PROCS`` or
            ``os.cpu_count()``.
        loop: The kind of every worker's loop, this one included: ``"asyncio"``
            (default) or ``"uvloop"``; default ``GORUN_LOOP``.
        debug: Asyncio debug mode for every worker; None keeps asyncio's default
            (``PYTHONASYNCIODEBUG``, ``-X dev``).
        deadlock: Detect deadlocks (see [`gorun.Deadlock`][gorun.Deadlock]); default
            ``GORUN_DEADLOCK``, else on. Detection watches the workers park in their
            selectors, so it is off with uvloop, which has none to watch.

    Raises:
        RuntimeError: *loop* is ``"uvloop"`` and uvloop is not installed.
        TypeError, ValueError: bad *procs*, *loop* or *deadlock*.
    """

    #: True in the classes that join Loop with an event loop class (see _concrete).
    _gorun_concrete = False

    def __new__(
        cls,
        procs: int | None = None,
        *,
        loop: str | None = None,
        debug: bool | None = None,
        deadlock: bool | None = None,
    ) -> Loop:
        if not cls._gorun_concrete:
            cls = _concrete(cls, resolve_loop(loop))
        return super().__new__(cls)

    def __init__(
        self,
        procs: int | None = None,
        *,
        loop: str | None = None,
        debug: bool | None = None,
        deadlock: bool | None = None,
    ) -> None:
        self._gorun: Runtime | None = None
        kind = resolve_loop(loop)
        detect = resolve_deadlock(deadlock) and kind == "asyncio"
        if isinstance(self, WorkerLoop):
            super().__init__(ParkingSelector())  # type: ignore[call-arg]
        else:
            super().__init__()
        if debug is not None:
            super().set_debug(debug)
        try:
            self._gorun = Runtime(resolve_procs(procs), loop=kind, debug=debug, home=self)
        except BaseException:
            super().close()
            raise
        if detect:
            self._gorun.park_watch = DeadlockWatch(self._gorun)

    def __repr__(self) -> str:
        base = super().__repr__().rstrip(">")
        return f"{base} procs={self.procs}>"

    @property
    def procs(self) -> int:
        """The number of workers of this loop's runtime, this loop included."""
        return self._gorun.procs if self._gorun is not None else 1

    @property
    def runtime(self) -> Runtime:
        """The runtime whose home loop this is."""
        assert self._gorun is not None
        return self._gorun

    def run_forever(self) -> None:
        rt = self._gorun
        if rt is None:  # pragma: no cover - only while __init__ failed
            return super().run_forever()
        home = rt.workers[0]
        previous = set_current_worker(home)
        home.thread_id = threading.get_ident()
        try:
            super().run_forever()
        finally:
            home.flush_wakes()  # wake-ups held back for a select that will not come now
            set_current_worker(previous)

    def run_until_complete(self, future: Any) -> Any:
        """Run until *future* is done, as asyncio does; it is the main goroutine meanwhile.

        Raises:
            gorun.Deadlock: every goroutine was blocked for good, the main one included
                (see [`gorun.Deadlock`][gorun.Deadlock]); the main one was cancelled.
        """
        rt = self._gorun
        if rt is None:  # pragma: no cover - only while __init__ failed
            return super().run_until_complete(future)
        fut = asyncio.ensure_future(future, loop=self)
        # The main goroutine meanwhile: a deadlock is reported to it (see _deadlock).
        previous, rt.main = rt.main, fut
        try:
            return super().run_until_complete(fut)
        except asyncio.CancelledError as exc:
            if rt.deadlock is not None and fut.cancelled():
                text, rt.deadlock = rt.deadlock, None
                raise Deadlock(f"{DEADLOCK_MARKER}\n\n{text}") from exc
            raise
        finally:
            rt.main = previous
            if previous is None:
                rt.notify_outliving()  # for gorun.testing.no_leaks()

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
        **kwargs: Any,
    ) -> asyncio.Task[T]:
        # Tasks of the home loop carry their runtime, so that go() from a plain thread
        # they start (asyncio.to_thread) joins this runtime rather than the default one.
        # Only the arguments the caller gave are passed on: from 3.14 asyncio hands them
        # to a task factory as they are (and any others, such as eager_start, to the
        # factory or the Task), and a factory may take neither a name nor a context
        # (before 3.11 none took a context).
        if name is not None:
            kwargs["name"] = name
        rt = self._gorun
        if context is None:
            if rt is None or current_runtime_var.get() is rt:
                return super().create_task(coro, **kwargs)  # it copies this context
            context = contextvars.copy_context()
            context.run(current_runtime_var.set, rt)
            if self.get_task_factory() is not None:
                # Make the Task inside the context it is to copy instead.
                base_create_task: Any = super().create_task
                task: asyncio.Task[T] = context.run(base_create_task, coro, **kwargs)
                return task
        elif rt is not None and context.get(current_runtime_var) is not rt:
            context.run(current_runtime_var.set, rt)
        return super().create_task(coro, context=context, **kwargs)

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        if getattr(self, "_gorun", None) is not None:
            self.runtime.set_debug(enabled)

    def set_exception_handler(self, handler: Any) -> None:
        """Set the exception handler of this loop and of every worker loop."""
        super().set_exception_handler(handler)
        if self._gorun is not None:
            self._gorun.set_exception_handler(handler)

    async def shutdown_asyncgens(self) -> None:
        """Cancel every goroutine on every worker and wait for them; then asyncio's own.

        ``asyncio.run`` and ``asyncio.Runner`` call this before closing the loop, so
        goroutines end (their ``finally`` blocks run) while this loop still serves them.
        """
        if self._gorun is not None:
            await self._gorun.cancel_all()
        await super().shutdown_asyncgens()

    def close(self) -> None:
        """Close the loop: cancel what is left, stop and join every worker thread."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if not self.is_closed() and self._gorun is not None:
            try:
                if not self._gorun.closing:
                    # Closed without asyncio.run's shutdown sequence: cancel the
                    # goroutines now, with this loop serving, since their finally blocks
                    # may need it. A plain Task: shutdown must not depend on a task
                    # factory the program set.
                    self.run_until_complete(asyncio.Task(self._gorun.cancel_all(), loop=self))
            finally:
                self._gorun.close()
        super().close()


#: (a Loop class, an event loop class) -> the concrete class that joins them.
_CONCRETE: dict[tuple[type, type], type] = {}


def _concrete(cls: type[Loop], kind: str) -> type[Loop]:
    # gorun.Loop (or a subclass a program made) joined with the event loop class of
    # *kind*, under the same name: what Loop(...) constructs. Keyed by the class itself,
    # not the kind: a module imported again (pytest's pytester does that) has new classes.
    base: type = WorkerLoop
    if kind == "uvloop":
        import uvloop  # optional: resolve_loop() checked that it is installed

        base = uvloop.Loop
    made = _CONCRETE.get((cls, base))
    if made is None:
        namespace = {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "_gorun_concrete": True,
        }
        made = _CONCRETE[(cls, base)] = type(cls.__name__, (cls, base), namespace)
    return made


def new_event_loop(
    *,
    procs: int | None = None,
    loop: str | None = None,
    debug: bool | None = None,
    deadlock: bool | None = None,
) -> Loop:
    """Create a [`Loop`][gorun.Loop]: a loop factory for ``asyncio.run`` and ``asyncio.Runner``.

    ``asyncio.run(main(), loop_factory=gorun.new_event_loop)`` runs *main* on gorun; use
    ``functools.partial(gorun.new_event_loop, procs=4)`` to choose the worker count. The
    arguments are those of [`Loop`][gorun.Loop].
    """
    return Loop(procs, loop=loop, debug=debug, deadlock=deadlock)


def run(
    main: Coroutine[Any, Any, T],
    *,
    procs: int | None = None,
    debug: bool | None = None,
    loop: str | None = None,
    deadlock: bool | None = None,
    dump_signal: int | None = None,
) -> T:
    """Run *main* on a new gorun runtime and return its result, like ``asyncio.run``.

    The calling thread runs the home loop (worker 0) and ``procs - 1`` worker threads
    run the rest. When *main* ends, goroutines still running are cancelled and awaited,
    every worker loop is closed and every worker thread joined. Ctrl-C cancels *main*
    and shuts down the same way, then raises KeyboardInterrupt.

    Args:
        main: The coroutine to run, e.g. ``main()``.
        procs: Number of worker loops; default ``GORUN_PROCS``, else ``os.cpu_count()``.
        debug: Asyncio debug mode on every worker; None keeps asyncio's default.
        loop: ``"asyncio"`` or ``"uvloop"``: the kind of every worker's loop, *main*'s
            included; default ``GORUN_LOOP``, else ``"asyncio"``.
        deadlock: Detect deadlocks; default ``GORUN_DEADLOCK``, else on.
        dump_signal: A signal (e.g. ``signal.SIGUSR1``) that prints [`gorun.dump()`][gorun.dump]
            to stderr while *main* runs.

    Raises:
        gorun.Deadlock: every goroutine was blocked for good, *main* included.
        RuntimeError: called from a running event loop (``await main`` there instead).
        TypeError, ValueError: bad *procs*, *loop*, *deadlock* or *dump_signal*.
    """
    try:
        if running_loop() is not None:
            raise RuntimeError(
                "gorun.run() cannot be called from a running event loop; "
                "await the coroutine, or start it with gorun.go()"
            )
        procs = resolve_procs(procs)
        loop = resolve_loop(loop)
        deadlock = resolve_deadlock(deadlock)
        if dump_signal is not None:
            dump_signal = signal.Signals(dump_signal)
    except BaseException:
        if isinstance(main, Coroutine):
            main.close()
        raise
    factory = functools.partial(Loop, procs, loop=loop, deadlock=deadlock)
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        if dump_signal is None:
            return runner.run(main)
        home = runner.get_loop()
        home.add_signal_handler(dump_signal, print_dump)
        try:
            return runner.run(main)
        finally:
            home.remove_signal_handler(dump_signal)



_PolicyBase: Any = POLICY_BASE


class GoPolicy(_PolicyBase):  # type: ignore[misc]
    """An event-loop policy whose loops are gorun [`Loop`][gorun.Loop] objects.

    After ``asyncio.set_event_loop_policy(gorun.GoPolicy())`` a plain
    ``asyncio.run(main())`` runs on gorun. Event-loop policies are deprecated from
    Python 3.14 (asyncio warns when one is set) and planned for removal in 3.16: prefer
    [`gorun.run()`][gorun.run] or ``loop_factory=gorun.new_event_loop``.

    Args:
        procs: Worker count of each loop this policy creates (default as for [`run()`][gorun.run]).
    """

    def __init__(self, procs: int | None = None) -> None:
        if _PolicyBase is object:
            raise RuntimeError(
                "this Python has no event-loop policies; use gorun.run() or "
                "asyncio.run(main(), loop_factory=gorun.new_event_loop)"
            )
        if procs is not None:
            resolve_procs(procs)
        super().__init__()
        self.procs = procs

    def new_event_loop(self) -> Loop:
        """A new [`Loop`][gorun.Loop] with this policy's worker count."""
        return Loop(self.procs)


# A goroutine may start its Task with asyncio.Task() on a Loop too (see _goroutine).
PLAIN_CREATE_TASK.add(Loop.create_task)


def install(procs: int | None = None) -> None:
    """Shorthand for ``asyncio.set_event_loop_policy(gorun.GoPolicy(procs))``."""
    asyncio.set_event_loop_policy(GoPolicy(procs))
