"""``gorun.dump()``: every live goroutine, what it waits for and where, like Go's dump.

A goroutine's state is read from its Task, never recorded on the hot paths: the future
the Task awaits says whether it is parked, and on what. Every gorun blocking operation
sleeps on a future held by a `Blocking` object that describes the wait (the
blocking-point protocol of ``_waiter``: what it waits for, on which primitive, since
when), and that object is among the values of the frames the Task is suspended in: this
module finds it there by its type and its future, never by a variable's name, and knows
no primitive by name. A Task awaited directly is another goroutine or task; asyncio's own
waits (``asyncio.sleep``, a TaskGroup's exit) are recognised by their code objects in
the chain of coroutines the Task is suspended in, which is also printed as its stack.

Everything here reads state owned by other threads without their locks. That is fine for
a diagnostic on a GIL build and for workers that are parked (the deadlock detector only
looks while every worker is); a goroutine that moves on meanwhile is shown as it was.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

from ._compat import awaited_future, gather_children
from ._goroutine import Goroutine
from ._runtime import Runtime, all_runtimes
from ._waiter import Blocking


@dataclass
class Wait:
    """What one task is doing, as `describe()` reads it."""

    state: str  # "running", "runnable", or what it waits for ("chan receive", ...)
    detail: str = ""  # e.g. the channel's repr
    since: float | None = None  # time.monotonic() when the wait began, if known
    #: True if only gorun primitives (or tasks) can end the wait: no timer, I/O, thread.
    on_gorun: bool = False
    frames: list[FrameType] = field(default_factory=list)


#: asyncio's own waits, by the code object of the coroutine that waits: (label, whether
#: only gorun primitives can end it). A TaskGroup waits for its tasks; a sleep for a timer.
_ASYNCIO_WAITS: dict[CodeType, tuple[str, bool]] = {
    asyncio.sleep.__code__: ("sleep", False),
    asyncio.TaskGroup.__aexit__.__code__: ("TaskGroup wait", True),
}

def await_chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames *task* is suspended in, outermost first (its await stack)."""
    frames: list[FrameType] = []
    obj: Any = task.get_coro()
    for _ in range(1000):  # a cycle would be a bug elsewhere; never loop forever here
        if obj is None:
            break
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(
            obj, "ag_frame", None
        )
        if frame is None:
            break
        frames.append(frame)
        obj = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "gi_yieldfrom", None)
            or getattr(obj, "ag_await", None)
        )
    return frames


def _blocking_on(fut: object, frames: list[FrameType]) -> tuple[Blocking, FrameType] | None:
    # The Blocking whose future *fut* is, among the values of the frames the Task is
    # suspended in (innermost first: the blocking operation's own frame), and its frame.
    for frame in reversed(frames):
        for value in list(frame.f_locals.values()):
            if isinstance(value, Blocking) and value.fut is fut:
                return value, frame
    return None


def describe(task: asyncio.Task[Any]) -> Wait:
    """Read what *task* is doing now (see the module docstring)."""
    # A coroutine that is executing now (on whichever thread) is the running one.
    if getattr(task.get_coro(), "cr_running", False):
        return Wait("running", frames=await_chain(task))
    waiter = awaited_future(task)
    frames = await_chain(task)
    if waiter is None:
        return Wait("runnable", frames=frames)
    found = _blocking_on(waiter, frames)
    if found is not None:
        blocking, frame = found
        try:
            detail = blocking.blocked_on(frame)
        except Exception as exc:  # a diagnostic must not fail on odd state
            detail = f"({type(exc).__name__} reading it)"
        return Wait(blocking.what, detail, blocking.since, True, frames)
    for frame in reversed(frames):
        hit = _ASYNCIO_WAITS.get(frame.f_code)
        if hit is not None:
            return Wait(hit[0], "", None, hit[1], frames)
    if isinstance(waiter, asyncio.Task):
        return Wait("awaiting task", repr(waiter.get_name()), None, True, frames)
    children = gather_children(waiter)
    if children is not None:
        only_tasks = all(isinstance(c, asyncio.Task) or c.done() for c in children)
        return Wait("gather", f"{len(children)} awaitables", None, only_tasks, frames)
    return Wait("awaiting a future or I/O", repr(waiter), None, False, frames)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def _frame_lines(frames: list[FrameType]) -> Iterator[str]:
    for frame in reversed(frames):  # innermost first, as Go prints
        code = frame.f_code
        yield f"        {code.co_qualname} at {code.co_filename}:{frame.f_lineno}"


def _worker_name(g: Goroutine[Any]) -> str:
    worker = g._started_on()
    if worker is None:
        return "not started"
    thread = worker.thread
    name = thread.name if thread is not None else threading.main_thread().name
    if worker.thread_id is not None and thread is None:
        for t in threading.enumerate():
            if t.ident == worker.thread_id:
                name = t.name
    return f"worker {worker.index} ({name})"


def _task_entry(title: str, where: str, task: asyncio.Task[Any], now: float) -> list[str]:
    w = describe(task)
    head = w.state
    if w.since is not None:
        head += f", {_duration(now - w.since)}"
    lines = [f"{title} [{head}] on {where}:"]
    if w.detail:
        lines.append(f"    {w.state}: {w.detail}")
    lines.extend(_frame_lines(w.frames))
    return lines


def goroutine_entry(g: Goroutine[Any], now: float) -> list[str]:
    """The dump of one goroutine (no lines if it is done)."""
    task = g._task
    title = f"goroutine {g.id} {g.name!r}"
    if task is None:
        if g.done():
            return []
        queued = g._queued_at  # a float until it starts, which it may do meanwhile
        waited = time.perf_counter() - queued if queued.__class__ is float and queued else 0.0
        return [f"{title} [runnable, not started, queued {_duration(waited)}]"]
    if task.done():
        return []
    return _task_entry(title, _worker_name(g), task, now)


def runtime_entries(rt: Runtime, now: float) -> list[str]:
    """The dump of one runtime: its goroutines, then the other tasks on its loops."""
    lines = [f"{rt!r}:"]
    seen: set[int] = set()
    for g in live_goroutines(rt):
        if g._task is not None:
            seen.add(id(g._task))
        lines.extend(goroutine_entry(g, now))
    for w in rt.workers:
        loop = w.loop
        if loop is None or loop.is_closed():
            continue
        for task in tasks_on(loop):
            if id(task) in seen or task.done():
                continue
            where = f"worker {w.index}" + (" (home loop)" if loop is rt.home else "")
            lines.extend(_task_entry(f"task {task.get_name()!r}", where, task, now))
    return lines


def live_goroutines(rt: Runtime) -> list[Goroutine[Any]]:
    """The goroutines of *rt* that are not done, oldest first: a snapshot, from any thread.

    No registry holds them (a dict cost each goroutine about 50 bytes, and two locked
    updates): a goroutine waits in a worker's queues until it starts, then is in that
    worker's list of running goroutines (``Worker.running``, linked through the
    goroutines themselves) until it is done. A goroutine that moves between two of those
    places while they are read (from one queue to another, from its queue into the list)
    could be missed; the runtime's counts tell, and the look is taken again.
    """
    found: dict[int, Goroutine[Any]] = {}
    for _ in range(5):
        found.clear()
        live = rt.num_goroutine()
        for w in rt.workers:  # queues first: a goroutine moves from there into the list
            for g in w.queued():
                if isinstance(g, Goroutine) and not g.done():
                    found[g.id] = g
        for w in rt.workers:
            r = w.running
            # A goroutine that left the list meanwhile holds None or its result in _next
            # (one slot: see Goroutine.__slots__): the walk stops, the counts tell.
            while isinstance(r, Goroutine) and r._worker is w:
                if not r.done():
                    found[r.id] = r
                r = r._next
        if len(found) >= min(live, rt.num_goroutine()):
            break
    return [found[i] for i in sorted(found)]


def tasks_on(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """``asyncio.all_tasks(loop)``, from any thread (it may meet its task set mid-change)."""
    for _ in range(10):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:
            continue
    return []


def dump() -> str:
    """Text listing every live goroutine of every gorun runtime, like Go's goroutine dump.

    For each goroutine: its id and name, its worker (and that worker's thread), its state
    (running; runnable; or what it is blocked on: ``chan receive`` or ``chan send`` on
    which channel, ``select`` over which channels, ``WaitGroup.wait``, ``Mutex.lock``,
    ``Once.do``, ``sleep``, another goroutine or task, or a future or I/O), how long it
    has been blocked there when gorun knows, and its await stack (innermost first). Other
    asyncio tasks running on a runtime's loops (the main coroutine, ``create_task``) are
    listed after its goroutines.

    Safe to call from any thread, at any time: it reads without stopping anything, so a
    goroutine that moves on meanwhile is shown as it was.
    """
    now = time.monotonic()
    runtimes = all_runtimes()
    if not runtimes:
        return "gorun: no runtime is running\n"
    lines: list[str] = []
    for rt in runtimes:
        lines.extend(runtime_entries(rt, now))
        lines.append("")
    return "\n".join(lines)


def print_dump() -> None:
    """Print [`dump()`][gorun.dump] to stderr (the handler of ``gorun.run(dump_signal=...)``)."""
    print(dump(), file=sys.stderr, flush=True)
