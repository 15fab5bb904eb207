"""``go()``: start a coroutine as a goroutine, in the runtime the call belongs to."""

from __future__ import annotations

import collections.abc
import contextvars
import types
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._current import current_runtime, current_runtime_var, default_runtime
from ._goroutine import Goroutine
from ._thread_state import current_worker, state

if TYPE_CHECKING:
    from ._worker import Worker

T = TypeVar("T")

_copy_context = contextvars.copy_context
_get_runtime_var = current_runtime_var.get
_CoroutineType = types.CoroutineType


def go(
    coro: Coroutine[Any, Any, T], /, *, name: str | None = None, local: bool = False
) -> Goroutine[T]:
    """Start *coro* as a goroutine and return its handle at once.

    From a goroutine (or the code running on a [`gorun.Loop`][gorun.Loop]), the new goroutine
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
    if type(coro) is not _CoroutineType and not isinstance(coro, collections.abc.Coroutine):
        hint = ""
        if callable(coro):
            hint = f"; did you mean go({getattr(coro, '__name__', 'fn')}(...))?"
        raise TypeError(f"go() needs a coroutine object, got {type(coro).__name__}{hint}")
    try:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"go() name must be a str or None, got {type(name).__name__}")
        worker = state.worker  # current_worker(), inline: this runs per goroutine
        if worker is not None:
            runtime = worker.runtime
        elif local:
            raise RuntimeError(
                "go(local=True) keeps a goroutine on the caller's gorun loop, but no "
                "gorun loop runs on this thread; use asyncio.create_task() on a "
                "foreign loop, or call go() without local=True"
            )
        else:
            runtime = current_runtime() or default_runtime()
        context = _copy_context()
        if _get_runtime_var() is not runtime:  # as a rule it is: the caller's context
            context.run(current_runtime_var.set, runtime)
        g: Goroutine[T] = Goroutine(coro, name, context)
        if local:
            assert worker is not None
            runtime.start_local(g, worker)
        elif worker is not None and not runtime._closing:
            runtime.spawned()  # spawn(), its common case inline (tests/test_copies.py)
            worker.push_local(g)
        else:
            runtime.spawn(g, worker)
    except BaseException:
        coro.close()
        raise
    return g


def start_on(coro: Coroutine[Any, Any, T], worker: Worker, *, name: str) -> Goroutine[T]:
    """Start *coro* as a goroutine on *worker*, and keep it there, from any thread.

    ``go(..., local=True)`` for a worker that may not be the caller's: on the caller's
    own worker it starts now, else as soon as that worker's loop gets to it (it is not
    queued where an idle worker could steal it).

    Raises:
        RuntimeError: the runtime is shutting down, or *worker* has stopped.
    """
    runtime = worker.runtime
    try:
        context = _copy_context()
        if _get_runtime_var() is not runtime:
            context.run(current_runtime_var.set, runtime)
        g: Goroutine[T] = Goroutine(coro, name, context)
        if current_worker() is worker:
            runtime.start_local(g, worker)
            return g
        runtime.count_spawn()
    except BaseException:
        coro.close()
        raise
    if not worker.post(g._start_on, worker):
        g._cancel_queued("its gorun worker has stopped")
        raise RuntimeError(f"cannot start {name!r}: gorun worker {worker.index} has stopped")
    return g
