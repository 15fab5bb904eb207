"""Which runtime a call belongs to, the process-wide default runtime, and the public
queries about the current runtime: [`procs()`][gorun.procs],
[`num_goroutine()`][gorun.num_goroutine] and [`stats()`][gorun.stats].

The current runtime is the one whose worker runs the calling thread; from a plain thread
started by a goroutine (``asyncio.to_thread``), the one its context carries
(``current_runtime_var``); from anywhere else, none, and ``go()`` uses the default
runtime, started on first use and closed at interpreter exit.
"""

from __future__ import annotations

import contextvars
import threading

from ._compat import register_before_thread_joins
from ._config import resolve_procs
from ._runtime import Runtime
from ._stats import Stats
from ._thread_state import current_worker

#: The runtime of the goroutine whose code is running, carried into ``to_thread`` calls.
current_runtime_var: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "gorun_runtime", default=None
)

_default_lock = threading.Lock()
_default_runtime: Runtime | None = None


# -- the runtime a call belongs to -----------------------------------------------------------


def current_runtime() -> Runtime | None:
    """The runtime of this thread's worker, or the one carried by the context, if running."""
    worker = current_worker()
    if worker is not None:
        return worker.runtime
    rt = current_runtime_var.get()
    if rt is not None and not rt.closing:
        return rt
    return None


def default_runtime() -> Runtime:
    """The process-wide runtime for ``go()`` from plain threads and foreign loops."""
    global _default_runtime
    rt = _default_runtime
    if rt is not None and not rt.closing:
        return rt
    with _default_lock:
        rt = _default_runtime
        if rt is None or rt.closing:
            rt = Runtime()
            _default_runtime = rt
            _register_exit(rt)
        return rt


def started_default_runtime() -> Runtime | None:
    """The default runtime if it has been started and not shut down."""
    rt = _default_runtime
    return rt if rt is not None and not rt.closing else None


def _register_exit(rt: Runtime) -> None:
    # Runs before the interpreter joins non-daemon threads, as concurrent.futures does,
    # so goroutines get cancelled and their finally blocks run before exit.
    register_before_thread_joins(rt.close)


# -- public introspection -------------------------------------------------------------------


def _runtime_for_query() -> Runtime | None:
    return current_runtime() or started_default_runtime()


def procs() -> int:
    """The number of workers of the current runtime.

    The current runtime is the one running the calling goroutine; from a plain thread,
    the default runtime. If that has not started, the number it would start with
    (``GORUN_PROCS``, else ``os.cpu_count()``).
    """
    rt = _runtime_for_query()
    return rt.procs if rt is not None else resolve_procs(None)


def num_goroutine() -> int:
    """The number of live goroutines (running or queued) in the current runtime."""
    rt = _runtime_for_query()
    return rt.num_goroutine() if rt is not None else 0


def stats() -> Stats:
    """A snapshot of the current runtime's per-worker counters.

    Raises:
        RuntimeError: no runtime runs here and the default runtime has not started.
    """
    rt = _runtime_for_query()
    if rt is None:
        raise RuntimeError(
            "no gorun runtime: call stats() from a goroutine, from code running on a "
            "gorun loop, or after go() has started the default runtime"
        )
    return rt.stats()
