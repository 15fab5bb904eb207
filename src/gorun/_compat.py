"""Every access gorun makes to private names of asyncio and of the stdlib under it.

asyncio gives no public way to do some of what gorun needs: read a loop's ready queue and
timers (to tell an idle loop from a busy one), reach its selector and self-pipe (to park a
worker and wake it), see which future a Task awaits (for ``gorun.dump()``), or queue a
Handle without the cost of ``call_soon``'s checks. Those accesses live here and nowhere
else, so a new Python release is one file to audit: each name below says what it reads,
and the tests that exercise it run on every interpreter CI covers (3.11 to 3.15, 3.13t).

Functions here are called off the hot paths. Where a hot path needs a private attribute
on every call, this module hands out the object itself once (a selector's fd map, a
loop's self-pipe) or supplies the whole hot function (`LoopBase.call_soon`).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import asyncio.format_helpers
import contextvars
import heapq
import inspect
import itertools
import math
import operator
import selectors
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVarTuple

_Ts = TypeVarTuple("_Ts")

#: ``asyncio._get_running_loop()``: the loop running on this thread, or None. On 3.11 it
#: makes a ``getpid()`` system call each time (see ``_thread_state.running_loop``).
get_running_loop_or_none: Callable[[], asyncio.AbstractEventLoop | None] = (
    asyncio._get_running_loop
)

#: True where ``asyncio._get_running_loop()`` costs a system call (3.11).
RUNNING_LOOP_CALLS_GETPID = sys.version_info < (3, 12)

#: ``asyncio.current_task(loop)`` as one C call: on 3.11 that is a Python function around
#: this mapping of loops to their running tasks (a channel asks on every wait).
current_task_on: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
    if sys.version_info < (3, 12)
    else asyncio.current_task
)

#: ``loop._task_factory``: the task factory set on a loop, or None (a C attribute getter:
#: ``get_task_factory()`` is a Python call, and goroutines ask once each).
task_factory_of: Callable[[Any], Any] = operator.attrgetter("_task_factory")


# -- loops ---------------------------------------------------------------------------------

_Handle = asyncio.Handle
_TimerHandle = asyncio.TimerHandle
_new_handle = object.__new__
_base_call_soon = asyncio.SelectorEventLoop.call_soon
_base_run_once = asyncio.SelectorEventLoop._run_once  # type: ignore[attr-defined]
_base_time = asyncio.SelectorEventLoop.time
_base_get_debug = asyncio.SelectorEventLoop.get_debug
_TRUE = itertools.repeat(True).__next__
_FALSE = itertools.repeat(False).__next__
_monotonic = time.monotonic
_heappop = heapq.heappop
_base = asyncio.base_events
_MAXIMUM_SELECT_TIMEOUT: float = _base.MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]
_MIN_SCHEDULED: int = _base._MIN_SCHEDULED_TIMER_HANDLES  # type: ignore[attr-defined]
_MIN_CANCELLED: float = _base._MIN_CANCELLED_TIMER_HANDLES_FRACTION  # type: ignore[attr-defined]
# From 3.15, the end of "due now" is at least one ulp past now.
_ULP_END = sys.version_info >= (3, 15)
# Whether the callback's description in an error report takes the loop's debug flag
# (3.13 and later; earlier, a keyword it does not know would be an error).
_FORMAT_DEBUG = "debug" in inspect.signature(
    asyncio.format_helpers._format_callback_source
).parameters


class LoopBase(asyncio.SelectorEventLoop):
    """asyncio's selector loop with a leaner ``call_soon`` and a hook for its thread check.

    Every task step and every resolved future goes through ``call_soon``, with a context.
    Outside debug mode asyncio's version checks that the loop is open and makes and
    queues a Handle, through three more Python calls (``Handle.__init__`` among them);
    this one queues the Handle itself and fills in its fields without calling its
    ``__init__``. Each of the two saves about a thirtieth of the instructions of a
    same-loop round trip between goroutines. A closed loop, debug mode or a call without a
    context takes asyncio's own path, with its errors and checks.
    (tests/test_runtime.py checks that the Handle has every field asyncio's would have.)
    """

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        # A future asks its loop get_debug() as it is made (a C future too): a Python
        # frame per blocked goroutine. Unless a subclass overrides it, an instance
        # attribute that is a C callable answers instead (asyncio sets the flag through
        # here, in __init__ too).
        if type(self).get_debug is _base_get_debug:
            self.get_debug = _TRUE if self._debug else _FALSE  # type: ignore[attr-defined,method-assign]

    #: Asked by _run_once after each batch of callbacks, when the batch made more ready
    #: and no timer is pending: may the iteration run those now, without selecting
    #: first? None (asyncio's way): never. A gorun worker sets its own (see
    #: ``Parking.run_on``), true when that select would have nothing to do.
    _run_on: Callable[[], bool] | None = None

    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle: Any
        if self._closed or self._debug or context is None:  # type: ignore[attr-defined]
            handle = _base_call_soon(self, callback, *args, context=context)
            if handle._source_traceback:
                # Debug mode's record of where the call was made: asyncio drops its own
                # frames from it, and this one too must go, so that it ends at the caller.
                del handle._source_traceback[-1]
            return handle  # type: ignore[no-any-return]
        # Handle(callback, args, self, context), without its Python-level __init__:
        # the fields it sets outside debug mode when given a context.
        handle = _new_handle(_Handle)
        handle._callback = callback
        handle._args = args
        handle._loop = self
        handle._context = context
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle  # type: ignore[no-any-return]

    def _run_once(self) -> None:
        # asyncio's _run_once (the same steps, on every version CI covers), with fewer
        # Python calls per iteration: the clock is read only when timers are due, an
        # empty event list is not processed, and a plain Handle's callback runs here
        # rather than in Handle._run (one frame less per callback; its error report is
        # handle_failed). Debug mode, a subclass with its own clock, and a timer heap
        # that asyncio would purge take asyncio's own.
        if self._debug or type(self).time is not _base_time:  # type: ignore[attr-defined]
            return _base_run_once(self)  # type: ignore[no-any-return]
        scheduled = self._scheduled  # type: ignore[attr-defined]
        if scheduled:
            count = len(scheduled)
            if count > _MIN_SCHEDULED and self._timer_cancelled_count / count > _MIN_CANCELLED:  # type: ignore[attr-defined]
                return _base_run_once(self)  # type: ignore[no-any-return]
            while scheduled and scheduled[0]._cancelled:
                self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
                handle = _heappop(scheduled)
                handle._scheduled = False
        ready = self._ready  # type: ignore[attr-defined]
        timeout: float | None = None
        if ready or self._stopping:  # type: ignore[attr-defined]
            timeout = 0
        elif scheduled:
            timeout = scheduled[0]._when - _monotonic()
            if timeout > _MAXIMUM_SELECT_TIMEOUT:
                timeout = _MAXIMUM_SELECT_TIMEOUT
            elif timeout < 0:
                timeout = 0
        event_list = self._selector.select(timeout)  # type: ignore[attr-defined]
        if event_list:
            self._process_events(event_list)  # type: ignore[attr-defined]
        event_list = None  # breaks cycles when an exception occurs
        if scheduled:
            _move_due_timers(scheduled, ready, self._clock_resolution)  # type: ignore[attr-defined]
        # Only what was ready before this point runs now; what it schedules waits for
        # the next iteration (after another poll), as in asyncio, unless the loop's
        # owner says that poll would have nothing to do (_run_on): then it runs now.
        popleft = ready.popleft
        run_on = self._run_on
        while True:
            for _ in range(len(ready)):
                handle = popleft()
                if handle._cancelled:
                    continue
                kind = type(handle)
                if kind is _Handle or kind is _TimerHandle:
                    try:
                        handle._context.run(handle._callback, *handle._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        handle_failed(handle, exc)
                else:
                    handle._run()
            handle = None  # breaks cycles when an exception occurs
            if not ready or run_on is None or scheduled or self._stopping or not run_on():  # type: ignore[attr-defined]
                return None

    def _check_thread(self) -> None:
        # asyncio's debug-mode check that a non-thread-safe call comes from the loop's
        # own thread; the error it raises is the subclass's (see wrong_thread_error).
        owner = getattr(self, "_thread_id", None)
        if owner is None or owner == threading.get_ident():
            return
        raise self.wrong_thread_error()

    def wrong_thread_error(self) -> RuntimeError:
        """The error for a non-thread-safe call from another thread (debug mode)."""
        return RuntimeError(
            "Non-thread-safe operation invoked on an event loop other than the current one"
        )


def _move_due_timers(scheduled: list[Any], ready: Any, resolution: float) -> None:
    # asyncio's _run_once: the timers due now (within the clock's resolution) move from
    # the heap to the ready queue, in order.
    now = _monotonic()
    end_time = now + (max(resolution, math.ulp(now)) if _ULP_END else resolution)
    while scheduled:
        handle = scheduled[0]
        if handle._when >= end_time:
            break
        handle = _heappop(scheduled)
        handle._scheduled = False
        ready.append(handle)


class DirectHandle(asyncio.Handle):
    """A Handle made once for a loop's own bookkeeping callback, queued again and again.

    ``call_soon(callback)`` without a context makes a Handle and copies the context each
    time, through asyncio's checks; this Handle is appended to the ready queue as it is
    (``loop._ready.append``), by the one thread that runs the loop, and never twice at a
    time (its owner keeps a flag). Its ``_run`` calls the callback directly, as a plain
    Python call in the context the loop runs in, rather than through ``Context.run``,
    which would enter the interpreter once more. The callback must take no arguments and
    need no context of its own.
    """

    __slots__ = ()

    def __init__(self, callback: Callable[[], object], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(callback, (), loop, contextvars.Context())
        if self._source_traceback:  # type: ignore[attr-defined]
            del self._source_traceback[-1]  # type: ignore[attr-defined]  # (this frame)

    def _run(self) -> None:
        try:
            self._callback()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            handle_failed(self, exc)


def handle_failed(handle: Any, exc: BaseException) -> None:
    """What asyncio's ``Handle._run`` does when the callback of *handle* raised *exc*."""
    extra = {"debug": handle._loop.get_debug()} if _FORMAT_DEBUG else {}
    source = asyncio.format_helpers._format_callback_source(
        handle._callback, handle._args, **extra
    )
    context = {"message": f"Exception in callback {source}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def loop_selector(loop: asyncio.AbstractEventLoop) -> selectors.BaseSelector | None:
    """The selector of a selector loop (``loop._selector``); None for other loops."""
    return getattr(loop, "_selector", None)


def signal_handlers(loop: asyncio.AbstractEventLoop) -> dict[int, Any] | None:
    """The live dict of a Unix loop's signal handlers (``loop._signal_handlers``)."""
    handlers = getattr(loop, "_signal_handlers", None)
    return handlers if isinstance(handlers, dict) else None


def signal_callbacks(loop: asyncio.AbstractEventLoop) -> list[object]:
    """The callbacks of the loop's signal handlers (a snapshot)."""
    handlers = signal_handlers(loop) or {}
    return [getattr(h, "_callback", None) for h in list(handlers.values())]


def self_pipe(loop: asyncio.AbstractEventLoop) -> tuple[Any, Any, Callable[[], object]]:
    """A selector loop's self-pipe: (read socket, write socket, asyncio's write function).

    Either socket may be None on a loop that has none; the write function is
    ``loop._write_to_self``, which writes one wake-up byte.
    """
    return (
        getattr(loop, "_ssock", None),
        getattr(loop, "_csock", None),
        loop._write_to_self,  # type: ignore[attr-defined]
    )


def loop_thread_id(loop: asyncio.AbstractEventLoop | None) -> int | None:
    """The ident of the thread running *loop* now (``loop._thread_id``), if any."""
    return getattr(loop, "_thread_id", None)


def has_ready_callbacks(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop has callbacks queued to run (``loop._ready``)."""
    return bool(loop._ready)  # type: ignore[attr-defined]


def has_live_timers(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a timer not cancelled is scheduled on the loop (``loop._scheduled``)."""
    return any(not h.cancelled() for h in list(loop._scheduled))  # type: ignore[attr-defined]


def fd_map(selector: selectors.BaseSelector) -> dict[int, selectors.SelectorKey]:
    """The selector's own fd -> key dict (``_fd_to_key``), live: ``get_map()`` makes a
    mapping object per call, and a busy loop asks once per iteration. selectors clears
    this dict on close and never replaces it."""
    return selector._fd_to_key  # type: ignore[attr-defined,no-any-return]


def epoll_object(selector: selectors.BaseSelector) -> Any:
    """The ``select.epoll`` object of an EpollSelector (``_selector``), created with it."""
    return selector._selector  # type: ignore[attr-defined]


def default_executor_idle_threads(loop: asyncio.AbstractEventLoop) -> list[int | None]:
    """Idents of the loop's default-executor threads if that executor is idle, else [].

    Idle: no work queued and every thread waiting for work (``_idle_semaphore``'s value
    equals the thread count), so none of them is running code that could wake anyone.
    """
    ex = getattr(loop, "_default_executor", None)
    threads = getattr(ex, "_threads", None)
    idle = getattr(getattr(ex, "_idle_semaphore", None), "_value", None)
    queue = getattr(ex, "_work_queue", None)
    if threads is not None and idle == len(threads) and queue is not None and queue.empty():
        return [t.ident for t in list(threads)]
    return []


# -- tasks and futures -----------------------------------------------------------------------


def awaited_future(task: asyncio.Task[Any]) -> Any:
    """The future *task* is suspended on (``_fut_waiter``), or None if it is not."""
    return getattr(task, "_fut_waiter", None)


def gather_children(fut: object) -> list[Any] | None:
    """The awaitables of an ``asyncio.gather()`` future, or None for any other future."""
    if isinstance(fut, asyncio.Future) and type(fut).__name__ == "_GatheringFuture":
        return list(getattr(fut, "_children", ()))
    return None


# -- policies and the interpreter ---------------------------------------------------------------


def _policy_base() -> type:
    # The stdlib's default policy, looked up by names that do not trigger the
    # deprecation warning Python 3.14 attaches to the public ones.
    if sys.platform != "win32":
        import asyncio.unix_events as unix_events

        base = getattr(unix_events, "_UnixDefaultEventLoopPolicy", None)
        if isinstance(base, type):
            return base
    for name in ("_BaseDefaultEventLoopPolicy", "BaseDefaultEventLoopPolicy"):
        base = getattr(asyncio.events, name, None)
        if isinstance(base, type):
            return base
    return object


#: The stdlib's default event-loop policy class, or ``object`` where there is none.
POLICY_BASE: type = _policy_base()


def register_before_thread_joins(fn: Callable[[], object]) -> None:
    """Run *fn* at exit before the interpreter joins non-daemon threads.

    ``threading._register_atexit``, as concurrent.futures uses; plain ``atexit`` where
    that is missing or the interpreter is already shutting down.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(fn)
            return
        except RuntimeError:  # the interpreter is already shutting down
            pass
    import atexit

    atexit.register(fn)


#: Loop class -> whether its create_task() makes a plain asyncio.Task when no task factory
#: is set, and nothing else a goroutine needs (see creates_plain_tasks).
PLAIN_TASKS: dict[type[asyncio.AbstractEventLoop], bool] = {}


#: ``create_task`` methods that make a plain ``asyncio.Task`` when no task factory is set
#: and add nothing a goroutine needs (asyncio's own; gorun.Loop registers its override,
#: which adds the runtime to the Task's context, which a goroutine's context carries
#: already: see _go.go()).
PLAIN_CREATE_TASK: set[object] = {asyncio.BaseEventLoop.create_task}


def creates_plain_tasks(cls: type[asyncio.AbstractEventLoop]) -> bool:
    """Whether *cls*'s create_task() makes a plain Task (cached in PLAIN_TASKS)."""
    # Goroutines start their Tasks with asyncio.Task() when the loop would do just that:
    # it saves two Python calls per goroutine. asyncio's create_task() only checks that
    # the loop is open (it runs: this is its tick) and applies the task factory (checked
    # at each start: it may be set at any time). Any other override, or a loop that is
    # not asyncio's, gets its own create_task().
    method = getattr(cls, "create_task", None)
    direct = issubclass(cls, asyncio.BaseEventLoop) and method in PLAIN_CREATE_TASK
    PLAIN_TASKS[cls] = direct
    return direct
