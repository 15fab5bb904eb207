"""What runs on this thread: its gorun worker, if any, and the running event loop.

``running_loop()`` is the one spelling gorun uses for "the loop running on this thread,
or None"; code that wants asyncio's error when there is none calls
``asyncio.get_running_loop()``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import TYPE_CHECKING

from ._compat import RUNNING_LOOP_CALLS_GETPID, get_running_loop_or_none

if TYPE_CHECKING:
    from ._worker import Worker


class _RunningLoop:
    # ``state.loop`` on a thread where no gorun worker's loop runs: asyncio's answer. A
    # non-data descriptor, so a value set on the thread (a worker's loop) comes first.
    def __get__(self, obj: object, cls: type | None = None) -> asyncio.AbstractEventLoop | None:
        return get_running_loop_or_none()


class _ThreadState(threading.local):
    worker: Worker | None = None  # the worker whose loop runs on this thread, if any
    #: The loop running on this thread, or None: the worker's, else asyncio's answer.
    loop: asyncio.AbstractEventLoop | None = _RunningLoop()  # type: ignore[assignment]


#: This thread's state. Read ``state.worker`` directly only on a hot path, where the
#: call to current_worker() counts.
state = _ThreadState()


def current_worker() -> Worker | None:
    """The gorun worker whose loop is running on this thread, if any."""
    worker: Worker | None = state.worker
    return worker


def set_current_worker(worker: Worker | None) -> Worker | None:
    """Make *worker* this thread's worker; return the previous one."""
    previous = current_worker()
    state.worker = worker
    if worker is not None and worker.loop is not None:
        state.loop = worker.loop
    else:
        vars(state).pop("loop", None)
    return previous


if not RUNNING_LOOP_CALLS_GETPID:
    running_loop = get_running_loop_or_none
else:
    #: The event loop running on this thread, or None. On 3.11 asyncio's own lookup
    #: makes a ``getpid()`` system call each time (a check against fork), about 0.2 µs,
    #: and a channel hand-off asks twice. A worker's thread runs nothing but its own
    #: loop, which ``state.loop`` holds there; the lookup is C calls only, no frame.
    running_loop = functools.partial(getattr, state, "loop")
