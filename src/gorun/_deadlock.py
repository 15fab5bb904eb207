"""Deadlock detection: "all goroutines are asleep", as Go reports it.

A runtime is deadlocked when nothing can ever wake any of its goroutines again. gorun
declares it only when all of this holds at once, and still holds a short grace later:

* every worker is parked: no callback ready, nothing in its queues or inbox, no wake-up
  held back; no timer pending (``asyncio.sleep``, ``call_later``, timeouts) and no file
  descriptor registered but the loop's own wake-up pipe (no server, socket, pipe or
  subprocess that could deliver an event);
* every task on the runtime's loops, the main one included, is blocked on a gorun
  primitive (a channel, ``select`` without default, WaitGroup, Mutex, RWMutex, Once,
  Group) or on other such tasks or goroutines. A task awaiting anything else (a future
  an executor thread or a callback will resolve, a stream) may be woken from outside;
* no other thread is alive but the runtime's own (workers, monitor) and the threads of
  its loops' default executors while those are idle: any other thread (one that has
  used a channel, or one that will) may still wake a goroutine. The threads of another
  runtime count as the runtime's own while that runtime is idle (no goroutine or task,
  every worker parked as above): a default runtime that ``go()`` started once, from a
  foreign loop or a plain thread, lives on with the process and must not hide every
  later deadlock. No other runtime has goroutines; no signal handler is installed on
  the runtime's loops (but gorun's dump_signal).

The check is a `DeadlockWatch`, which the home loop registers as its runtime's
``park_watch``: the scheduler calls it on the last worker to park (every other worker
parked and not woken). Instead of blocking with no timeout, that worker then blocks for
``GRACE`` and, if that select returns with nothing and no other worker has selected
since (their ``selects`` counters are unchanged), the watch reads every task's state
(see ``_dump``). A deadlock cancels the main task (the one ``run_until_complete`` runs on
the home loop) with a marker; [`gorun.Loop`][gorun.Loop] turns that cancellation into
[`gorun.Deadlock`][gorun.Deadlock], whose message holds the dump. Threads and loops
outside the runtime that reach a channel only through ``call_soon_threadsafe`` are not
seen: turn the check off for such programs (``gorun.run(..., deadlock=False)`` or
``GORUN_DEADLOCK=0``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from ._compat import (
    default_executor_idle_threads,
    fd_map,
    has_live_timers,
    has_ready_callbacks,
    loop_selector,
    loop_thread_id,
    signal_callbacks,
)
from ._dump import describe, print_dump, runtime_entries
from ._runtime import Runtime, all_runtimes
from ._waiter import plain_threads
from ._worker import Worker

#: How long every worker must stay parked before the tasks are looked at.
GRACE = 0.02


class Deadlock(RuntimeError):
    """Every goroutine of a runtime is blocked, and nothing can wake any of them.

    Raised by ``gorun.run()`` (and ``asyncio.run`` or ``Runner.run`` on a gorun loop) in
    place of the main coroutine's result: its goroutines were all blocked on channels,
    ``select``, WaitGroup, Mutex or Once, with no timer, I/O or thread left that could
    wake one. The message holds [`gorun.dump()`][gorun.dump] as it was at that moment.
    """


#: The message the main task is cancelled with when a deadlock is declared.
DEADLOCK_MARKER = "gorun: all goroutines are asleep - deadlock!"


class DeadlockWatch:
    """A runtime's park watch: the select timeout of the last worker to park.

    Returns None (park for as long as it takes), GRACE (this worker is the last one to
    park: look again when that select returns empty) or 0 (a deadlock was just declared).
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # The worker and the other workers' select counters when the last grace began.
        self._armed: tuple[int, ...] | None = None

    def __call__(self, worker: Worker) -> float | None:
        rt = self.rt
        previous, self._armed = self._armed, None
        # Cheap tests first, since a loop parks once per message or I/O event: a loop
        # that watches a file descriptor besides its wake-up pipe (a server) may be woken
        # by I/O (loops_quiet's test, on this loop alone).
        selector = worker.selector
        if selector is not None and len(selector.watched) > 1:
            return None
        if not nothing_queued(rt) or not loops_quiet(rt):
            return None
        key = (worker.index, *(w.selects for w in rt.workers if w is not worker))
        if previous == key and worker.quiet:
            text = check(rt)
            if text is None:
                return None
            declare(rt, text)
            return 0.0  # the cancellation may be queued on this very loop
        self._armed = key
        return GRACE


def nothing_queued(rt: Runtime) -> bool:
    """True if every worker parks in a selector and has nothing queued or held back."""
    for w in rt.workers:
        if not w.parks_in_selector:
            return False  # uvloop workers: parking cannot be seen
        if w.inbox or w.runq or w.runnext is not None or w.deferred:
            return False
    return True


def loops_quiet(rt: Runtime) -> bool:
    """True if no loop of *rt* has a callback ready, a timer pending or an fd to watch."""
    for w in rt.workers:
        loop: Any = w.loop
        if loop is None or loop.is_closed() or has_ready_callbacks(loop):
            return False
        if has_live_timers(loop):
            return False
        selector = loop_selector(loop)
        if selector is None or len(fd_map(selector)) > 1:  # more than the wake-up pipe
            return False
        if any(cb is not print_dump for cb in signal_callbacks(loop)):
            return False  # a signal may come and run a handler that wakes a goroutine
    return True


def check(rt: Runtime) -> str | None:
    """The dump if *rt* is deadlocked (see the module docstring), else None."""
    main = rt.main
    if main is None or main.done() or other_threads(rt) or other_runtimes_busy(rt):
        return None
    home_id = loop_thread_id(rt.home)
    if any(t.ident != home_id for t in plain_threads()):  # the home thread runs the loop now
        return None
    tasks: list[asyncio.Task[Any]] = []
    for w in rt.workers:
        try:
            tasks.extend(asyncio.all_tasks(w.loop))
        except RuntimeError:  # the task set changed under us: someone is running
            return None
    if main not in tasks:
        return None
    for task in tasks:
        if not describe(task).on_gorun:
            return None
    return "\n".join(runtime_entries(rt, time.monotonic()))


def other_threads(rt: Runtime) -> list[threading.Thread]:
    """Live threads that might wake a goroutine of *rt*.

    All but the home loop's, the workers and monitor of *rt* and of every idle runtime,
    and the threads of a default executor of their loops while that executor is idle
    (no work queued or running: work a task awaits would make that task not blocked on
    gorun anyway).
    """
    inert: set[int | None] = {loop_thread_id(rt.home)}
    for other in all_runtimes():
        if other is not rt and not idle(other):
            continue
        for w in other.workers:
            inert.add(w.thread_id)
            inert.update(default_executor_idle_threads(w.loop))
        monitor = other.sysmon.thread
        if monitor is not None:
            inert.add(monitor.ident)
    return [t for t in threading.enumerate() if t.ident not in inert and t.is_alive()]


def idle(rt: Runtime) -> bool:
    """True if nothing runs or waits on *rt*: no goroutine or task, and every worker
    parked with nothing ready, queued, pending or watched (its threads can wake nobody).
    A runtime with a home loop is never idle: its main task runs there."""
    if rt.home is not None or rt.num_goroutine() or not nothing_queued(rt):
        return False
    if not loops_quiet(rt):
        return False
    try:
        return not any(asyncio.all_tasks(w.loop) for w in rt.workers)
    except RuntimeError:  # the task set changed under us: something runs
        return False


def other_runtimes_busy(rt: Runtime) -> bool:
    """True if another runtime has goroutines: they may use *rt*'s channels."""
    return any(other is not rt and other.num_goroutine() for other in all_runtimes())


def declare(rt: Runtime, text: str) -> None:
    """Record the deadlock and cancel the main task with the marker."""
    rt.deadlock = text
    rt.workers[0].post(_cancel_main, rt)


def _cancel_main(rt: Runtime) -> None:
    main = rt.main
    if main is not None and not main.done():
        main.cancel(DEADLOCK_MARKER)
