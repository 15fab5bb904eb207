"""``gorun.dump()``: every live goroutine, what it waits for and where, like Go's dump.

A goroutine's state is read from its Task, never recorded on the hot paths: the Task's
``_fut_waiter`` says whether it is parked, and the chain of coroutines it is suspended in
(``cr_await``, down to the future) says on what. The innermost frame that is one of
gorun's blocking operations (``Chan.recv``, ``select``, ``Mutex.lock``, ...) names the
wait; the waiter object in that chain (a ``Solo`` or ``Parker``) says since when.

Everything here reads state owned by other threads without their locks. That is fine for
a diagnostic on a GIL build and for workers that are parked (the deadlock detector only
looks while every worker is); a goroutine that moves on meanwhile is shown as it was.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._goroutine import Goroutine
    from ._runtime import Runtime


@dataclass
class Wait:
    """What one task is doing, as `describe()` reads it."""

    state: str  # "running", "runnable", or what it waits for ("chan receive", ...)
    detail: str = ""  # e.g. the channel's repr
    since: float | None = None  # time.monotonic() when the wait began, if known
    #: True if only gorun primitives (or tasks) can end the wait: no timer, I/O, thread.
    on_gorun: bool = False
    frames: list[FrameType] = field(default_factory=list)


def _chan_detail(frame: FrameType) -> str:
    return repr(frame.f_locals.get("self"))


def _select_detail(frame: FrameType) -> str:
    ops = frame.f_locals.get("ops") or ()
    names = {0: "recv", 1: "recv_ok", 2: "send"}
    parts = []
    for kind, ch, _value in ops:
        parts.append(f"{names.get(kind, kind)} {ch!r}")
    return "; ".join(parts)


def _self_detail(frame: FrameType) -> str:
    return repr(frame.f_locals.get("self"))


#: Code object of a gorun blocking operation -> (state label, detail, only gorun can end it)
_WAITS: dict[CodeType, tuple[str, Callable[[FrameType], str], bool]] = {}


def _waits() -> dict[CodeType, tuple[str, Callable[[FrameType], str], bool]]:
    if not _WAITS:
        from . import _select
        from ._chan import Chan
        from ._goroutine import Goroutine
        from ._group import Group
        from ._sync import Mutex, Once, RWMutex, WaitGroup

        table: list[tuple[Any, str, Callable[[FrameType], str], bool]] = [
            (Chan.send, "chan send", _chan_detail, True),
            (Chan.recv, "chan receive", _chan_detail, True),
            (Chan.recv_ok, "chan receive", _chan_detail, True),
            (_select.select, "select", _select_detail, True),
            (WaitGroup.wait, "WaitGroup.wait", _self_detail, True),
            (Mutex.lock, "Mutex.lock", _self_detail, True),
            (RWMutex.lock, "RWMutex.lock", _self_detail, True),
            (RWMutex.rlock, "RWMutex.rlock", _self_detail, True),
            (Once.do, "Once.do", _self_detail, True),
            (Group.__aexit__, "Group wait", _self_detail, True),
            (Goroutine.__await__, "awaiting goroutine", _self_detail, True),
            (Goroutine._await_remote, "awaiting goroutine", _self_detail, True),
            (asyncio.sleep, "sleep", lambda f: "", False),
            (asyncio.TaskGroup.__aexit__, "TaskGroup wait", lambda f: "", True),
        ]
        for fn, label, detail, on_gorun in table:
            _WAITS[fn.__code__] = (label, detail, on_gorun)
    return _WAITS


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


def describe(task: asyncio.Task[Any]) -> Wait:
    """Read what *task* is doing now (see the module docstring)."""
    # A coroutine that is executing now (on whichever thread) is the running one.
    if getattr(task.get_coro(), "cr_running", False):
        return Wait("running", frames=await_chain(task))
    waiter = getattr(task, "_fut_waiter", None)
    frames = await_chain(task)
    if waiter is None:
        return Wait("runnable", frames=frames)
    table = _waits()
    since = None
    for frame in reversed(frames):
        if since is None:
            for name in ("op", "waiter", "parker"):
                w = frame.f_locals.get(name)
                if w is not None and isinstance(getattr(w, "since", None), float):
                    since = w.since
                    break
        hit = table.get(frame.f_code)
        if hit is not None:
            label, detail, on_gorun = hit
            try:
                text = detail(frame)
            except Exception as exc:  # a diagnostic must not fail on odd state
                text = f"({type(exc).__name__} reading it)"
            return Wait(label, text, since, on_gorun, frames)
    if isinstance(waiter, asyncio.Task):
        return Wait("awaiting task", repr(waiter.get_name()), None, True, frames)
    if isinstance(waiter, asyncio.futures.Future) and type(waiter).__name__ == "_GatheringFuture":
        children = getattr(waiter, "_children", ())
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
    worker = g._worker
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
        waited = time.perf_counter() - g._queued_at if g._queued_at else 0.0
        return [f"{title} [runnable, not started, queued {_duration(waited)}]"]
    if task.done():
        return []
    return _task_entry(title, _worker_name(g), task, now)


def runtime_entries(rt: Runtime, now: float) -> list[str]:
    """The dump of one runtime: its goroutines, then the other tasks on its loops."""
    lines = [f"{rt!r}:"]
    seen: set[int] = set()
    for g in rt.live_goroutines():
        if g._task is not None:
            seen.add(id(g._task))
        lines.extend(goroutine_entry(g, now))
    for w in rt.workers:
        loop = w.loop
        if loop is None or loop.is_closed():
            continue
        for task in _tasks_of(loop):
            if id(task) in seen or task.done():
                continue
            where = f"worker {w.index}" + (" (home loop)" if loop is rt.home else "")
            lines.extend(_task_entry(f"task {task.get_name()!r}", where, task, now))
    return lines


def _tasks_of(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    # asyncio.all_tasks(loop) from another thread may meet its task set mid-change.
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
    from ._runtime import all_runtimes

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
    import sys

    print(dump(), file=sys.stderr, flush=True)


# -- goroutines left running when main returned, for gorun.testing.no_leaks() -------------

_leak_lock = threading.Lock()
_leak_watchers = 0  # no_leaks() blocks open now; guarded by _leak_lock
#: Goroutine id -> (the goroutine, its dump) for goroutines still running when the main
#: coroutine of their runtime returned, or when the runtime shut down.
_outlived: dict[int, tuple[Goroutine[Any], list[str]]] = {}


def watch_shutdowns(delta: int) -> None:
    """Count a no_leaks() block in (+1) or out (-1); with none open, record nothing."""
    global _leak_watchers
    with _leak_lock:
        _leak_watchers += delta
        if _leak_watchers == 0:
            _outlived.clear()


def record_outliving(rt: Runtime) -> None:
    """*rt*'s main coroutine returned, or *rt* shuts down: remember what still runs.

    A goroutine that then finishes on its own is not a leak; one that is cancelled
    (as shutdown cancels what is left) or still runs at the check is.
    """
    if not _leak_watchers:
        return
    now = time.monotonic()
    entries = [(g, goroutine_entry(g, now)) for g in rt.live_goroutines()]
    with _leak_lock:
        if _leak_watchers:
            for g, entry in entries:
                if entry and g.id not in _outlived:
                    _outlived[g.id] = (g, entry)


def outlived(first_id: int, exclude: set[int]) -> list[list[str]]:
    """Dumps of recorded goroutines with an id above *first_id* that did not finish."""
    with _leak_lock:
        found = list(_outlived.values())
    return [
        entry
        for g, entry in found
        if g.id > first_id and g.id not in exclude and (not g.done() or g.cancelled())
    ]
