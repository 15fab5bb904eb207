"""The race guard: a loop-bound asyncio object used from another worker fails loudly.

An asyncio future, Event, Lock, Queue, transport or client session belongs to the loop
it was made on. Touched from a goroutine on another worker (another thread), asyncio
either raises (a Task awaiting a future of another loop; a Lock or Queue already bound
to another loop) or, worse, goes on silently: ``fut.set_result()`` from the wrong
thread schedules callbacks on a loop that is not watching, and they may run late or
never. gorun makes both loud and says what to do:

* under ``debug=True`` (asyncio's debug mode on every worker), asyncio checks the thread
  of every ``call_soon``; gorun's loops raise, in the offending goroutine, an error that
  names the worker that owns the object, the goroutine that used it, and the fix
  (`misuse_message`, which ``_selector.WorkerLoop`` raises);
* always, when a goroutine ends with one of asyncio's own "different loop" errors, that
  error gets a note saying the same (see ``explain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from ._thread_state import current_worker

FIX = (
    "asyncio objects (futures, Events, Locks, Queues, transports, client sessions) "
    "belong to the loop that made them. Use such an object only from goroutines on "
    "that loop: start them there with gorun.go(..., local=True), or pass data between "
    "workers through a gorun.Chan. State that every worker needs (a pool, a lock, a "
    "client) must be one per worker: make it in a hook run on every worker with "
    "gorun.on_every_worker(), or on first use by each loop (see the guide's "
    "'Serving on every worker')."
)

#: Phrases of asyncio's own errors for an object used from the wrong loop.
_ASYNCIO_PHRASES = ("attached to a different loop", "bound to a different event loop")


def _caller() -> str:
    worker = current_worker()
    task = None
    with contextlib.suppress(RuntimeError):
        task = asyncio.current_task()
    who = f"goroutine {task.get_name()!r}" if task is not None else "code"
    if worker is not None:
        return f"{who} on gorun worker {worker.index} (thread {threading.current_thread().name})"
    return f"{who} on thread {threading.current_thread().name}"


def _owner(loop: Any) -> str:
    worker = getattr(loop, "_gorun_worker", None)
    if worker is None:
        return "another event loop"
    return f"gorun worker {worker.index}'s loop"


def misuse_message(loop: Any) -> str:
    """The error for an object of *loop* touched from the calling thread."""
    return f"an object of {_owner(loop)} was used by {_caller()}. {FIX}"


def explain(exc: BaseException, worker_index: int | None) -> None:
    """Add gorun's explanation to asyncio's "different loop" errors (in place)."""
    if not isinstance(exc, RuntimeError):
        return
    text = str(exc)
    if not any(phrase in text for phrase in _ASYNCIO_PHRASES):
        return
    where = f"on gorun worker {worker_index}" if worker_index is not None else "in gorun"
    note = f"gorun: this goroutine ran {where} and used an object of another loop. {FIX}"
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
