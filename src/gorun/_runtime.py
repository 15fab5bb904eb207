"""The runtime: N workers, goroutine placement, work stealing, and shutdown.

Placement (where a new goroutine waits to start):

* spawned on a worker's thread: that worker's ``runnext`` slot, so spawner and spawnee
  share a loop while the worker keeps up (see ``_worker``);
* spawned from a plain thread or a foreign event loop: the queue of a parked worker if
  there is one, else the next worker in turn.

Stealing: a worker whose loop has nothing ready (its selector is about to block) takes
half of another worker's ``runq``, oldest first, once the oldest entry has waited longer
than ``steal_grace``; a lone ``runnext`` only after ``runnext_grace``. The grace keeps a
pair spawned together on the spawner's loop when that loop gets to them promptly, and
still rescues goroutines queued behind a callback that blocks its loop. Only goroutines
that have not started move: an asyncio Task and its futures belong to one loop.

With the GIL, one more condition: the victim's loop must be stuck, that is, it has not
come back to its select for longer than ``stuck_after`` (a callback is blocking it, or
the GIL is held elsewhere). A loop that keeps iterating gets through its own queue as
fast as the GIL lets anyone, so taking goroutines from it adds no throughput; it only
splits goroutines that talk to each other over two threads, where each message costs a
cross-thread wake-up and a GIL hand-over instead of a same-loop hand-off. On a
free-threaded build a backlog alone is enough, since the thief runs in parallel.

At most one parked worker is woken at a time to look for work (``_nspinning``); a thief
that leaves work behind wakes the next one, so a fan-out spreads over every worker
without a storm of cross-thread wake-ups.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from ._config import resolve_loop, resolve_procs
from ._stats import Stats, WorkerStats
from ._worker import GIL_ENABLED, Worker, current_worker, set_current_worker

if TYPE_CHECKING:
    from ._goroutine import Goroutine

#: How long a queued goroutine waits for its own worker before idle workers may steal it.
STEAL_GRACE = 200e-6
#: The same for the ``runnext`` slot, which holds a goroutine meant to run beside its spawner.
RUNNEXT_GRACE = 2e-3
#: With the GIL, how long a loop must go without coming back to its select before idle
#: workers may take its queued goroutines (see the module docstring).
STUCK_AFTER = 200e-6

#: The runtime of the goroutine whose code is running, carried into ``to_thread`` calls.
current_runtime_var: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "gorun_runtime", default=None
)

#: How long a worker may hold back a wake-up before the monitor sends it.
DEFER_LIMIT = 1e-3
#: The monitor's polling period while goroutines are queued, and its back-off limit.
SYSMON_MIN = 1e-3
SYSMON_MAX = 10e-3
#: With nothing queued for this long, the monitor sleeps until a goroutine is queued.
SYSMON_IDLE_AFTER = 50e-3

_default_lock = threading.Lock()
_default_runtime: Runtime | None = None


def make_worker_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new loop for a worker thread: a selector loop we can park, or uvloop."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    from ._guard import new_worker_loop

    return new_worker_loop()


class Runtime:
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
        detect_deadlocks: bool = True,
    ) -> None:
        self.procs = resolve_procs(procs)
        self.kind = resolve_loop(loop)
        self.debug = debug
        self.home = home
        self.steal_grace = STEAL_GRACE
        self.runnext_grace = RUNNEXT_GRACE
        self.stuck_after = STUCK_AFTER
        self.lock = threading.Lock()
        # Guarded by self.lock: every goroutine from go() until it is done (by id).
        self.goroutines: dict[int, Goroutine[Any]] = {}
        self._closing = False
        self._closed = False
        self._nspinning = 0
        self._next_inject = 0
        self._exception_handler: Any = None
        self.sysmon = _Sysmon(self)  # before the workers, which keep a reference
        self.workers = [Worker(self, i, self.kind) for i in range(self.procs)]
        for worker in self.workers:
            worker.others = tuple(w for w in self.workers if w is not worker)
        #: Deadlock detection (see _deadlock); only a runtime with a home loop has a
        #: main goroutine to report a deadlock to.
        self.detect_deadlocks = detect_deadlocks and home is not None
        self.deadlock: str | None = None  # the dump, once a deadlock was declared
        self._watch: tuple[int, ...] | None = None  # see _deadlock.watch
        with _runtimes_lock:
            _runtimes[id(self)] = self
        first = 0
        if home is not None:
            self.workers[0].kind = "asyncio"
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
        # free-threaded builds too (CPython gh-117657, from 3.13). go() takes its ids
        # from the same counter (see _goroutine).
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
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                with worker.lock:
                    worker.closed = True
                    worker.inbox.clear()
                set_current_worker(None)
                loop.close()

    # -- placement and stealing ------------------------------------------------------------

    def spawn(self, g: Goroutine[Any], caller: Worker | None) -> None:
        """Queue *g* to start: beside its spawner if *caller* is one of ours, else injected."""
        self._register(g)
        if caller is not None and caller.runtime is self:
            caller.push_local(g)
            return
        workers = self.workers
        n = len(workers)
        with self.lock:
            start = self._next_inject
            self._next_inject = (start + 1) % n
        target = workers[start]
        for i in range(n):
            w = workers[(start + i) % n]
            if w.parked and not w.notified:
                target = w
                break
        for i in range(n):
            if workers[(target.index + i) % n].push_remote(g):
                return
        with self.lock:
            self.goroutines.pop(g.id, None)
        raise RuntimeError("cannot start a goroutine: every gorun worker has shut down")

    def start_local(self, g: Goroutine[Any], worker: Worker) -> None:
        """Start *g* now on *worker* (the caller's own loop): ``go(..., local=True)``."""
        self._register(g)
        g._start(worker)

    def _register(self, g: Goroutine[Any]) -> None:
        # Per goroutine, like goroutine_exited(): acquire() and release() rather than a
        # `with` block, which costs twice as much on CPython 3.11 (about 2,000
        # instructions against 900: a twentieth of what asyncio spends on a whole Task).
        lock = self.lock
        lock.acquire()
        try:
            closing = self._closing
            if not closing:
                self.goroutines[g.id] = g
        finally:
            lock.release()
        if closing:
            raise RuntimeError("cannot start a goroutine: its gorun runtime is shutting down")

    def goroutine_exited(self, g: Goroutine[Any]) -> None:
        lock = self.lock
        lock.acquire()
        try:
            self.goroutines.pop(g.id, None)
        finally:
            lock.release()

    def live_goroutines(self) -> list[Goroutine[Any]]:
        """The goroutines not done yet, oldest first (a snapshot)."""
        with self.lock:
            return list(self.goroutines.values())

    def wake_idle(self) -> None:
        """Wake one parked worker to look for work, unless one is already looking."""
        workers = self.workers
        n = len(workers)
        if n == 1 or self._nspinning or self._closing:
            return  # nobody else to wake, or somebody is looking already
        start = int(random.random() * n)  # randrange(n) costs ten times as much
        for i in range(n):
            w = workers[(start + i) % n]
            if w.parked and not w.notified:
                with self.lock:
                    if self._nspinning:
                        return
                    self._nspinning += 1
                    w.spinning = True
                if w.wake_to_steal():
                    return
                with self.lock:
                    # Not woken by us: it woke up on its own meanwhile, and may already
                    # have handed the token back in steal_into (do not count it twice).
                    if w.spinning:
                        w.spinning = False
                        self._nspinning -= 1

    def stop_spinning(self, thief: Worker) -> None:
        """*thief*, woken to look for work (see wake_idle), has looked: hand the token back."""
        with self.lock:
            if thief.spinning:
                thief.spinning = False
                self._nspinning -= 1

    def steal_into(self, thief: Worker) -> float | None:
        """Move goroutines from another worker's queue to *thief*'s.

        Returns 0.0 if something was stolen; else the delay after which a queued
        goroutine elsewhere becomes stealable, or None if there is nothing to wait for.
        """
        if thief.spinning:
            self.stop_spinning(thief)
        if self._closing:
            return None
        workers = self.workers
        n = len(workers)
        if n == 1:
            return None
        for victim in workers:  # the common case, an idle program: nothing queued anywhere
            if victim is not thief and (victim.runq or victim.runnext is not None):
                break
        else:
            return None
        now = time.perf_counter()
        retry: float | None = None
        start = int(random.random() * n)  # randrange(n) costs ten times as much
        for i in range(n):
            victim = workers[(start + i) % n]
            if victim is thief or not (victim.runq or victim.runnext is not None):
                continue
            if GIL_ENABLED and now - victim.last_select <= self.stuck_after:
                # With the GIL: its loop is running, not stuck in a callback, so leave
                # its goroutines to it (see the module docstring). The monitor wakes a
                # thief if it gets stuck.
                continue
            got: list[Goroutine[Any]] = []
            with victim.lock:
                if victim.runq:
                    wait = victim.runq[0]._queued_at + self.steal_grace - now
                    if wait <= 0:
                        for _ in range((len(victim.runq) + 1) // 2):
                            got.append(victim.runq.popleft())
                elif victim.runnext is not None:
                    wait = victim.runnext._queued_at + self.runnext_grace - now
                    if wait <= 0:
                        got.append(victim.runnext)
                        victim.runnext = None
                else:
                    continue
                left = len(victim.runq)
            if not got:
                retry = wait if retry is None else min(retry, wait)
                continue
            for g in got:
                g._queued_at = now  # its new worker gets a grace period of its own
            with thief.lock:
                thief.runq.extend(got)
            thief.stolen += len(got)
            if left or len(got) > 1 or any(w.runq for w in workers):
                # Work is left queued somewhere (the thief's own queue included, which
                # it starts one at a time): wake the next idle worker to look, as Go's
                # spinning Ms do, so a fan-out reaches every worker.
                self.wake_idle()
            return 0.0
        return retry

    def find_stuck(self) -> tuple[bool, bool]:
        """Wake an idle worker if a queued goroutine has waited past its grace.

        Returns whether any goroutine is queued at all (the monitor keeps watching), and
        whether one was stuck (an idle worker was asked to take it).
        """
        now = time.perf_counter()
        queued = stuck = False
        for w in self.workers:
            try:
                if w.runq:
                    queued = True
                    waited = now - w.runq[0]._queued_at > self.steal_grace
                elif w.runnext is not None:
                    queued = True
                    waited = now - w.runnext._queued_at > self.runnext_grace
                else:
                    continue
            except (IndexError, AttributeError):  # emptied while we looked
                queued = True
                continue
            if waited and (not GIL_ENABLED or now - w.last_select > self.stuck_after):
                stuck = True
        if stuck:
            self.wake_idle()
        return queued, stuck

    def send_deferred(self) -> bool:
        """Send the wake-ups a busy loop has held back too long (see Worker.defer_wake).

        Returns True if any worker holds wake-ups back (the monitor keeps watching).
        The owner sends them again at its next select, which costs the target one
        spurious wake-up at most.
        """
        now = time.perf_counter()
        held = False
        for w in self.workers:
            deferred = w._deferred
            if deferred:
                held = True
                if now - w._deferred_since > DEFER_LIMIT:
                    for target in list(deferred):
                        target.wake_now()
        return held

    # -- introspection -----------------------------------------------------------------------

    def num_goroutine(self) -> int:
        with self.lock:
            return len(self.goroutines)

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
        from ._dump import record_outliving

        record_outliving(self)
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
        me = asyncio.current_task()
        for _ in range(100):
            worker.drop_queued()
            tasks = [t for t in asyncio.all_tasks(loop) if t is not me]
            if not tasks:
                return
            goroutine_tasks = {g._task for g in self.live_goroutines() if g._worker is worker}
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


class _Sysmon:
    """A monitor thread that rescues goroutines queued behind a busy or blocked loop.

    A goroutine waits in its spawner's queue until that loop yields. If the loop instead
    runs a long callback, or blocks in one (``time.sleep``, a blocking client), no idle
    worker hears of it: idle workers park and steal only when woken. Like Go's
    ``sysmon``, this thread looks at the queues every millisecond or so while anything
    is queued, and wakes an idle worker when a goroutine has waited past its grace.
    With nothing queued it backs off, then sleeps until the next goroutine is queued,
    so an idle program costs nothing.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cond = threading.Condition(threading.Lock())
        self.idle = True  # sleeping until poked; guarded by cond, read as a hint
        # When its current sleep ends and it wants the GIL back (inf: not before it is
        # poked). A busy worker that sees this time pass lets it have the GIL
        # (Worker._yield_to_sysmon); written without a lock, read as a hint.
        self.due = float("inf")
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="gorun-sysmon", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def poke(self) -> None:
        """A goroutine was queued: make sure the monitor is watching."""
        if self.idle and self._thread is not None:
            with self.cond:
                if self.idle:
                    self.idle = False
                    self.cond.notify()

    def _main(self) -> None:
        delay = SYSMON_MIN
        quiet = 0.0
        while True:
            with self.cond:
                if self._stopping:
                    return
                if self.idle:
                    self.due = float("inf")
                    self.cond.wait()
                    delay, quiet = SYSMON_MIN, 0.0
                else:
                    self.due = time.perf_counter() + delay
                    self.cond.wait(delay)
                self.due = float("inf")  # running: it has the GIL
                if self._stopping:
                    return
            held = self.runtime.send_deferred()
            queued, stuck = self.runtime.find_stuck()
            if stuck:
                delay, quiet = SYSMON_MIN, 0.0
                continue
            if queued:
                # Goroutines wait, but their loops get to them: keep watching, less
                # and less often. Each look takes the GIL from a busy worker, which
                # costs it a hand-over (tens of microseconds) every time.
                delay, quiet = min(delay * 2, SYSMON_MAX), 0.0
                continue
            if held:
                # Held-back wake-ups are normally sent within microseconds: keep an
                # eye on them, at the slowest rate.
                delay, quiet = SYSMON_MAX, 0.0
                continue
            quiet += delay
            delay = min(delay * 2, SYSMON_MAX)
            if quiet >= SYSMON_IDLE_AFTER:
                with self.cond:
                    self.idle = True
                # A goroutine queued after the scan above, by a thread that still saw
                # idle False, did not poke: look once more now that idle is set.
                if self.runtime.find_stuck()[0] or self.runtime.send_deferred():
                    with self.cond:
                        self.idle = False
                    delay, quiet = SYSMON_MIN, 0.0


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


def call_in_loop(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> bool:
    """Run ``fn(*args)`` on *loop*'s thread soon, from any thread; False if it is closed.

    A gorun worker gets a coalesced post; any other loop gets ``call_soon_threadsafe``
    (or ``call_soon`` when it is the loop running here).
    """
    worker: Worker | None = getattr(loop, "_gorun_worker", None)
    if worker is not None and worker.loop is loop:
        return worker.post(fn, *args)
    try:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(fn, *args)
        else:
            loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # closed
        return False
    return True


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
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(rt.close)
            return
        except RuntimeError:  # the interpreter is already shutting down
            pass
    import atexit

    atexit.register(rt.close)


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
