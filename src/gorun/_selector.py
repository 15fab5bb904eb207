"""The stdlib loop that workers run, and the selector an idle worker parks in.

asyncio calls ``selector.select(timeout)`` once per loop iteration: ``timeout=0`` when
callbacks are ready, a positive timeout or None when the loop has nothing to do. That
call is gorun's hook into a stdlib loop. `ParkingSelector` offers it: the worker that owns
the loop replaces the selector's ``select`` with its own (``Worker.attach``), which runs
the scheduler's work around `ParkingSelector.select_parked` (the real select, with the
wake-up bytes read inline). This module knows nothing of workers: it is the hook.
"""

from __future__ import annotations

import math
import select
import selectors
import socket
from collections.abc import Callable
from typing import Any

from ._compat import LoopBase, epoll_object, fd_map
from ._guard import misuse_message

_BaseSelector: type[selectors.BaseSelector] = selectors.DefaultSelector
#: The platform selector's own select(), unhooked.
base_select = _BaseSelector.select
# epoll's poll(), when the default selector is EpollSelector (Linux): see select_parked.
_epoll_poll: Callable[..., list[tuple[int, int]]] | None = None
_EPOLLIN = _EPOLLOUT = 0
if getattr(selectors, "EpollSelector", None) is _BaseSelector:
    _epoll_poll = select.epoll.poll
    _EPOLLIN, _EPOLLOUT = select.EPOLLIN, select.EPOLLOUT


class ParkingSelector(_BaseSelector):  # type: ignore[misc,valid-type]
    """The loop's selector, whose ``select`` its worker replaces (see the module docstring).

    A subclass rather than a wrapper, because the loop calls ``select`` once per
    iteration: one Python call less there is worth it. Until a worker attaches, ``select``
    is the platform selector's own.
    """

    def __init__(self) -> None:
        super().__init__()
        #: The selector's live fd -> key map (see _compat.fd_map): the loop's self-pipe
        #: is one entry; more means the loop watches a socket, a pipe or a server.
        self.watched = fd_map(self)
        self.poller = epoll_object(self) if _epoll_poll is not None else None
        # The loop's signal handlers (set by Worker.attach): a signal reaches them as a
        # byte on the self-pipe, so while there are any, every select polls.
        self.signals: dict[int, Any] = {}
        # The read end of the loop's self-pipe, and its fd (set by Worker.attach).
        self.wake_sock: socket.socket | None = None
        self.wake_fd = -1
        self.got_any = False  # see select_parked

    def select_parked(
        self, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """``select(timeout)`` for a worker with nothing to do, minus the wake-up bytes.

        A wake-up byte (gorun's, or ``call_soon_threadsafe``'s) only ends the select:
        the callback it announces is queued already. The bytes are read here, in one
        ``recv``, not by asyncio's reader callback for the self-pipe, which costs a
        Handle run and a second ``recv`` that ends in BlockingIOError. With the Python
        code of ``EpollSelector.select`` done inline too, that is about a tenth of the
        instructions of a message between workers. Bytes left over keep the pipe
        readable: the next select returns at once and reads on. Not while the loop has
        signal handlers, whose numbers come as such bytes for asyncio to dispatch.
        ``got_any``: whether anything came, a wake-up byte included (for the deadlock
        watch).
        """
        wake_fd = self.wake_fd
        if _epoll_poll is None or wake_fd < 0 or self.signals:
            return self._select_reading_wake_bytes(timeout)
        # EpollSelector.select, inline (the original: selectors.EpollSelector.select;
        # tests/test_runtime.py runs the conformance tests both ways).
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:
            timeout = math.ceil(timeout * 1e3) * 1e-3  # epoll counts milliseconds
        fd_to_key = self.watched
        try:
            # At least 1: epoll refuses 0, and the self-pipe's reader is removable.
            ready = _epoll_poll(self.poller, timeout, max(len(fd_to_key), 1))
        except InterruptedError:
            self.got_any = False
            return []
        self.got_any = bool(ready)
        events = []
        for fd, flags in ready:
            if fd == wake_fd:
                try:  # noqa: SIM105 - read_wake_bytes(), inline (tests/test_runtime.py's
                    # flood test runs this path and the one that calls it)
                    self.wake_sock.recv(4096)  # type: ignore[union-attr]
                except (InterruptedError, BlockingIOError):
                    pass
                continue
            key = fd_to_key.get(fd)
            if key is not None:
                mask = 0
                if flags & ~_EPOLLIN:
                    mask |= selectors.EVENT_WRITE
                if flags & ~_EPOLLOUT:
                    mask |= selectors.EVENT_READ
                events.append((key, mask & key.events))
        return events

    def _select_reading_wake_bytes(
        self, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        # select_parked through the platform selector's own select().
        wake_fd = self.wake_fd
        events = base_select(self, timeout)
        self.got_any = bool(events)
        if wake_fd >= 0 and not self.signals:
            for i, (key, _) in enumerate(events):
                if key.fd == wake_fd:
                    self.read_wake_bytes()
                    del events[i]
                    break
        return events

    def read_wake_bytes(self) -> None:
        """Read what is in the self-pipe (wake-up bytes only announce queued callbacks)."""
        try:  # noqa: SIM105 - contextlib.suppress is three Python calls more per wake-up
            self.wake_sock.recv(4096)  # type: ignore[union-attr]
        except (InterruptedError, BlockingIOError):
            pass


class WorkerLoop(LoopBase):
    """The stdlib selector loop gorun's workers run (see ``_compat.LoopBase``).

    In asyncio's debug mode, a non-thread-safe call from another thread raises an error
    that names the worker that owns the loop, the goroutine that made the call, and the
    fix (the race guard, ``_guard``).
    """

    def wrong_thread_error(self) -> RuntimeError:
        return RuntimeError(
            "Non-thread-safe operation invoked on an event loop other than the current "
            f"one: {misuse_message(self)}"
        )


def new_worker_loop() -> WorkerLoop:
    """A stdlib worker loop, with the selector that parks its worker."""
    return WorkerLoop(ParkingSelector())
