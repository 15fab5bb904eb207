"""The runtime: N workers, the count of goroutines on them, and their shutdown.

Where a new goroutine waits to start, and how idle workers take goroutines from busy
ones, is the runtime's other half (`_placement`). The runtime also keeps the registry of
live runtimes (for ``gorun.dump()``) and offers the hooks the layers above register
with: ``park_watch`` (deadlock detection) and ``outlive_hooks`` (leak checking).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._config import permit_enabled, resolve_loop, resolve_procs
from ._permit import Permit
from ._placement import CLOSING, Placement
from ._selector import new_worker_loop
from ._sharing import Sharing
from ._stats import Stats, WorkerStats
from ._sysmon import Sysmon
from ._thread_state import current_worker, set_current_worker
from ._wakeup import GIL_ENABLED, call_in_loop
from ._worker import Startable, Worker

if TYPE_CHECKING:
    from ._goroutine import Goroutine

#: How long a queued goroutine waits for its own worker before idle workers may steal it.
STEAL_GRACE = 200e-6
#: The same for the ``runnext`` slot, which holds a goroutine meant to run beside its spawner.
RUNNEXT_GRACE = 2e-3
#: With the GIL, how long a loop must go without coming back to its select before idle
#: workers may take its queued goroutines (see the module docstring).
STUCK_AFTER = 200e-6

#: How long a worker may hold back a wake-up before the monitor sends it.
DEFER_LIMIT = 1e-3

#: A park watch (see Runtime.park_watch): called on the last worker to park, with it,
#: returns the timeout of its select (None: block until woken).
ParkWatch = Callable[[Worker], "float | None"]

#: Called with a runtime whose goroutines may outlive what started them: its main
#: coroutine returned, or it began to shut down. Leak checking registers here while a
#: check is open (``gorun.testing.no_leaks``); see notify_outliving.
outlive_hooks: list[Callable[[Runtime], object]] = []


def make_worker_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new loop for a worker thread: a selector loop we can park, or uvloop."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return new_worker_loop()


class Runtime(Placement, Sharing):
    """N workers and the goroutines on them. Created by [`gorun.Loop`][gorun.Loop] or lazily."""

    _ids = itertools.count(1)
    _ids_lock = threading.Lock()

    def __init__(
        self,
        procs: int | None = None,
        *,
        loop: str | None = None,
        debug: bool | None = None,
        home: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.procs = resolve_procs(procs)
        self.kind = resolve_loop(loop)
        self.debug = debug
        self.home = home
        self.steal_grace = STEAL_GRACE
        self.runnext_grace = RUNNEXT_GRACE
        self.stuck_after = STUCK_AFTER
        self.lock = threading.Lock()
        # How many goroutines were spawned, and how many of them are done: atomic counts
        # (see next_id), not a registry. A dict of live goroutines cost each one about 50
        # bytes and two locked updates; the live ones can be found where they are (see
        # _goroutine.live_goroutines).
        self._spawned = itertools.count()
        self._exited = itertools.count()
        #: Count a goroutine about to be queued (any thread), once its runtime is known
        #: not to be closing (see count_spawn, which checks): a C call.
        self.spawned = self._spawned.__next__
        #: Count a spawned goroutine as done (any thread; once per goroutine): a C call.
        self.goroutine_exited = self._exited.__next__
        self._closing = False
        self._closed = False
        self._nspinning = 0
        self._next_inject = 0
        self._exception_handler: Any = None
        self.sysmon = Sysmon(self)  # before the workers, which keep a reference
        #: The workers' run permit (see _permit): on a GIL build, with several workers.
        # (permit_enabled() first: a bad GORUN_GIL_PERMIT is an error on every build.)
        self.permit = Permit() if permit_enabled() and GIL_ENABLED and self.procs > 1 else None
        self.init_sharing()
        self.workers = [Worker(self, i) for i in range(self.procs)]
        for worker in self.workers:
            worker.others = tuple(w for w in self.workers if w is not worker)
        #: The hook the last worker to park calls (see Worker._park): deadlock detection
        #: registers here (the home loop does, see _loop). None: no hook.
        self.park_watch: ParkWatch | None = None
        #: The future the home loop runs now (its main coroutine), set by the home loop.
        self.main: asyncio.Future[Any] | None = None
        self.deadlock: str | None = None  # the dump, once a deadlock was declared
        with _runtimes_lock:
            _runtimes[id(self)] = self
        first = 0
        if home is not None:
            self.workers[0].attach(home)
            first = 1
        try:
            for worker in self.workers[first:]:
                self._start_thread(worker)
            if self.procs > 1:
                self.sysmon.start()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "running"
        return f"<gorun Runtime procs={self.procs} loop={self.kind!r} {state}>"

    @classmethod
    def next_id(cls) -> int:
        # No lock: itertools.count's __next__ is atomic, one C call under the GIL, and on
        # free-threaded builds too (CPython gh-117657, from 3.13). Goroutines take their
        # ids from the same counter (see _goroutine).
        return next(cls._ids)

    # -- threads ------------------------------------------------------------------------------

    def _start_thread(self, worker: Worker) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._thread_main,
            args=(worker, ready, failure),
            name=f"gorun-worker-{worker.index}",
            daemon=True,
        )
        worker.thread = thread
        thread.start()
        ready.wait()
        if failure:
            raise RuntimeError(f"gorun worker {worker.index} failed to start") from failure[0]

    def _thread_main(
        self, worker: Worker, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        try:
            loop = make_worker_loop(self.kind)
            if self.debug is not None:
                loop.set_debug(self.debug)
            if self._exception_handler is not None:
                loop.set_exception_handler(self._exception_handler)
            worker.attach(loop)
            worker.thread_id = threading.get_ident()
            set_current_worker(worker)
            if not worker.parks_in_selector:
                loop.call_soon(worker.tick)  # it counts itself idle at its first tick
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            worker.flush_wakes()
            try:
                worker.drop_queued()
                loop.run_until_complete(self._finish_tasks(worker))
                loop.run_until_complete(loop.shutdown_asyncgens())
                _shutdown_default_executor(loop)
            finally:
                with worker.lock:
                    worker.closed = True
                    worker.inbox.clear()
                if worker.permit is not None:
                    worker.permit.release(worker)
                set_current_worker(None)
                loop.close()

    # -- goroutine counts ------------------------------------------------------------------

    def start_local(self, g: Goroutine[Any], worker: Worker) -> None:
        """Start *g* now on *worker* (the caller's own loop): ``go(..., local=True)``."""
        self.count_spawn()
        g._start_on(worker)

    def count_spawn(self) -> None:
        """Count a goroutine about to be queued or started (any thread).

        Raises:
            RuntimeError: the runtime is shutting down.
        """
        if self._closing:
            raise RuntimeError(CLOSING)
        self.spawned()

    # -- introspection -----------------------------------------------------------------------

    def num_goroutine(self) -> int:
        # The done count first: a goroutine counted done was counted spawned before, so
        # the difference is never negative (a spawn in between counts as live).
        exited = _count_of(self._exited)
        return _count_of(self._spawned) - exited

    def stats(self) -> Stats:
        workers = []
        for w in self.workers:
            with w.lock:
                queued = len(w.runq) + (w.runnext is not None)
                wakeups = w.wakeups
            workers.append(
                WorkerStats(
                    index=w.index,
                    thread_id=w.thread_id,
                    goroutines=w.started - w.finished,
                    started=w.started,
                    stolen=w.stolen,
                    queued=queued,
                    wakeups=wakeups,
                    loop=w.kind,
                )
            )
        return Stats(procs=self.procs, goroutines=self.num_goroutine(), workers=tuple(workers))

    def set_debug(self, enabled: bool) -> None:
        self.debug = enabled
        for w in self.workers:
            if w.loop is not self.home:
                w.post(w.loop.set_debug, enabled)

    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler
        for w in self.workers:
            if w.loop is not self.home:
                w.post(w.loop.set_exception_handler, handler)

    def notify_outliving(self) -> None:
        """Tell the outlive hooks that this runtime's live goroutines outlive their main."""
        for hook in list(outlive_hooks):
            hook(self)

    # -- shutdown ----------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    async def cancel_all(self) -> None:
        """Cancel every goroutine and task on every worker, and wait for them to end.

        Runs on the home loop while it still serves, so goroutines elsewhere can finish
        their ``finally`` blocks even when those talk to goroutines on the home loop.
        """
        with self.lock:
            self._closing = True
        self.notify_outliving()
        home_loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for w in self.workers:
            if w.loop is home_loop:
                continue
            fut: asyncio.Future[None] = home_loop.create_future()
            if w.post(_shutdown_worker_tasks, w, home_loop, fut):
                waits.append(fut)
        home = current_worker()
        if home is not None and home.runtime is self:
            home.drop_queued()
            await self._finish_tasks(home)
        if waits:
            await asyncio.gather(*waits)

    async def _finish_tasks(self, worker: Worker) -> None:
        # Cancel what is still running on this worker's loop and wait for it, until no
        # task but this one is left (a finally block may start another).
        loop = asyncio.get_running_loop()
        me = asyncio.current_task(loop)
        for _ in range(100):
            worker.drop_queued()
            tasks = [t for t in asyncio.all_tasks(loop) if t is not me]
            if not tasks:
                return
            goroutine_tasks = {t for t in tasks if started_as(t) is not None}
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for t, res in zip(tasks, results, strict=True):
                if t in goroutine_tasks or not isinstance(res, BaseException):
                    continue  # a goroutine keeps its own outcome for whoever asks
                if isinstance(res, asyncio.CancelledError):
                    continue
                loop.call_exception_handler(
                    {
                        "message": "unhandled exception during gorun shutdown",
                        "exception": res,
                        "task": t,
                    }
                )

    def close(self) -> None:
        """Cancel what is left, stop every worker thread and join it."""
        with self.lock:
            if self._closed:
                return
            self._closing = True
            self._closed = True
        with _runtimes_lock:
            _runtimes.pop(id(self), None)
        me = current_worker()
        if me is not None and me.runtime is self and me.loop is not self.home:
            raise RuntimeError("a gorun runtime cannot be closed from one of its own workers")
        threads = []
        for w in self.workers:
            if w.thread is not None and w.thread.is_alive():
                w.post(w.loop.stop)
                threads.append(w.thread)
        self.sysmon.stop()
        for t in threads:
            t.join()
        if self.home is not None:
            home = self.workers[0]
            home.drop_queued()
            with home.lock:
                home.closed = True
                home.inbox.clear()


def started_as(task: asyncio.Future[Any]) -> Startable | None:
    """The Startable a worker started as *task* (a done callback of it), or None.

    None too once *task* is done: a done future has handed its callbacks over.
    """
    for callback, _context in getattr(task, "_callbacks", None) or ():
        if hasattr(callback, "_start_on"):
            return callback  # type: ignore[no-any-return]
    return None


def _count_of(counter: itertools.count[int]) -> int:
    # How many values a count() that started at 0 has given: its repr is "count(N)", the
    # only way to read it without taking one (its pickling went away in 3.14).
    return int(repr(counter)[6:-1])


def _shutdown_default_executor(loop: asyncio.AbstractEventLoop) -> None:
    # loop.shutdown_default_executor() joins the executor from a new thread, which
    # CPython 3.12+ refuses once the interpreter is shutting down (a runtime closed at
    # exit): then join it from this worker's thread, which has nothing else left to do.
    try:
        loop.run_until_complete(loop.shutdown_default_executor())
    except RuntimeError as exc:
        if "interpreter shutdown" not in str(exc):
            raise
        executor = getattr(loop, "_default_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)


def _shutdown_worker_tasks(
    worker: Worker, home_loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]
) -> None:
    # Runs on the worker's loop: cancel its goroutines, then tell the home loop.
    async def finish() -> None:
        try:
            await worker.runtime._finish_tasks(worker)
        finally:
            call_in_loop(home_loop, _resolve, fut)

    worker.loop.create_task(finish())


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# Every runtime not closed yet, for gorun.dump(); by id, so that a runtime is only in
# here between its __init__ and its close().
_runtimes: dict[int, Runtime] = {}
_runtimes_lock = threading.Lock()


def all_runtimes() -> list[Runtime]:
    """The runtimes not closed yet, oldest first."""
    with _runtimes_lock:
        return list(_runtimes.values())


