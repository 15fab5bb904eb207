"""The stdlib loop that workers run, and the selector an idle worker parks in.

asyncio calls ``selector.select(timeout)`` once per loop iteration: ``timeout=0`` when
callbacks are ready, a positive timeout or None when the loop has nothing to do. That
call is gorun's hook into a stdlib loop. `ParkingSelector` offers it: the worker that owns
the loop replaces the selector's ``select`` with its own (``Worker.attach``), which runs
the scheduler's work around `ParkingSelector.select_parked` (the real select, with the
wake-up bytes read inline). This module knows nothing of workers: it is the hook.
"""

from __future__ import annotations

import contextlib
import math
import select
import selectors
import socket
import time
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

#: A stand-by listener (see `ParkingSelector.stand_by`) that left a pending connection to
#: its leader is not watched again for this long; a leader counts as taking connections
#: if it is in its select or has selected within this time. So while the leader is
#: stuck (a callback blocks its loop), a new connection waits at most about twice this
#: before a stand-by worker accepts it.
STANDBY_RECHECK = 10e-3

_perf_counter = time.perf_counter
_INF = float("inf")


class Standby:
    """A listening socket that a loop serves only while its leader does not.

    ``rearm_at``: None while the socket is watched; else it was taken out of the epoll
    set (its leader was taking connections), and is put back at that time.
    """

    __slots__ = ("leader_takes", "rearm_at", "sock")

    def __init__(self, sock: socket.socket, leader_takes: Callable[[], bool]) -> None:
        self.sock = sock
        self.leader_takes = leader_takes
        self.rearm_at: float | None = None


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
        #: Stand-by listeners by fd (see stand_by); rearm_at: the earliest of theirs.
        #: Only the owning loop's thread changes the epoll set; other threads only add
        #: entries here, before the loop watches the socket.
        self.standby: dict[int, Standby] = {}
        self.rearm_at = _INF

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
        if self.standby:
            return self._select_standing_by(timeout)
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
        events = base_select(self, timeout)
        self.got_any = bool(events)
        self._take_wake_event(events)
        return events

    def _take_wake_event(self, events: list[tuple[selectors.SelectorKey, int]]) -> bool:
        # Take the self-pipe's event out of *events* and read its bytes; True if it was
        # there. Not while the loop has signal handlers (their numbers come as bytes).
        wake_fd = self.wake_fd
        if wake_fd >= 0 and not self.signals:
            for i, (key, _) in enumerate(events):
                if key.fd == wake_fd:
                    self.read_wake_bytes()
                    del events[i]
                    return True
        return False

    def stand_by(self, sock: socket.socket, leader_takes: Callable[[], bool]) -> bool:
        """Serve the listening socket *sock* only while ``leader_takes()`` is False.

        *sock* shares its accept queue with a socket that another loop, its leader,
        serves (a duplicate of it). When a connection is pending and the leader is
        taking connections, this loop leaves it to the leader: it stops watching *sock*
        for `STANDBY_RECHECK`, then looks again. So the connections go to the leader,
        and to this loop only while the leader is stuck. Call it before the loop
        watches *sock*. Returns False, and changes nothing, where the selector is not
        epoll (the socket is then served as any other).
        """
        if self.poller is None:
            return False
        self.standby[sock.fileno()] = Standby(sock, leader_takes)
        return True

    def screen(
        self, events: list[tuple[selectors.SelectorKey, int]]
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """*events* less the stand-by listeners left to their leaders (see stand_by).

        Those are taken out of the epoll set until their ``rearm_at``; the ones due are
        put back first. Entries of closed sockets are dropped.
        """
        standby = self.standby
        now = _perf_counter()
        if now >= self.rearm_at:
            self._rearm(now)
        kept = []
        for key, mask in events:
            sb = standby.get(key.fd)
            if sb is None:
                kept.append((key, mask))
            elif sb.sock.fileno() != key.fd:  # closed, its fd reused
                del standby[key.fd]
                kept.append((key, mask))
            elif sb.leader_takes():
                with contextlib.suppress(OSError):
                    self.poller.unregister(key.fd)  # type: ignore[union-attr]
                sb.rearm_at = now + STANDBY_RECHECK
                self.rearm_at = min(self.rearm_at, sb.rearm_at)
            else:
                kept.append((key, mask))
        return kept

    def _rearm(self, now: float) -> None:
        # Watch again the stand-by listeners whose time out of the epoll set is over.
        # One that the loop stopped watching meanwhile (its server closed) stays out;
        # one it watched again (asyncio registers it anew) is in already.
        nxt = _INF
        for fd, sb in list(self.standby.items()):
            if sb.sock.fileno() != fd:
                del self.standby[fd]
            elif sb.rearm_at is None:
                continue
            elif sb.rearm_at > now:
                nxt = min(nxt, sb.rearm_at)
            else:
                sb.rearm_at = None
                key = self.watched.get(fd)
                if key is not None:
                    mask = (_EPOLLIN if key.events & selectors.EVENT_READ else 0) | (
                        _EPOLLOUT if key.events & selectors.EVENT_WRITE else 0
                    )
                    with contextlib.suppress(FileExistsError):  # asyncio's again
                        self.poller.register(fd, mask)  # type: ignore[union-attr]
        self.rearm_at = nxt

    def _select_standing_by(
        self, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        # select_parked for a loop with stand-by listeners: a select that only found
        # connections left to their leaders goes on waiting (the worker would otherwise
        # wake up, and take the run permit, for nothing), and one that has listeners out
        # of the epoll set wakes up to put them back in time.
        deadline = None if timeout is None else _perf_counter() + max(timeout, 0.0)
        while True:
            wait = None if deadline is None else max(deadline - _perf_counter(), 0.0)
            if self.rearm_at < _INF:
                due = max(self.rearm_at - _perf_counter(), 0.0)
                wait = due if wait is None else min(wait, due)
            events = base_select(self, wait)
            woke = self._take_wake_event(events)
            kept = self.screen(events) if self.standby else events
            if kept or woke or (deadline is not None and _perf_counter() >= deadline):
                self.got_any = bool(kept) or woke
                return kept

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
