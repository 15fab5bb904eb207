"""Stand-by listeners (ParkingSelector.stand_by): a loop that shares a listening socket with
a leader leaves pending connections to it while the leader takes them, and accepts them
itself while it does not. Driven on a bare selector, with the leader a flag."""

from __future__ import annotations

import selectors
import socket
import time
import types
from collections.abc import Iterator

import pytest

from gorun import _selector
from gorun._selector import ParkingSelector

pytestmark = pytest.mark.skipif(
    _selector._epoll_poll is None, reason="stand-by listeners need epoll"
)


@pytest.fixture
def parts() -> Iterator[tuple[ParkingSelector, socket.socket, socket.socket, list[bool]]]:
    # A selector watching a stand-by duplicate of a listening socket; leader[0] is
    # what the leader answers (True: it takes connections).
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    dup = listener.dup()
    selector = ParkingSelector()
    leader = [True]
    assert selector.stand_by(dup, lambda: leader[0])
    selector.register(dup.fileno(), selectors.EVENT_READ, "accept")
    try:
        yield selector, listener, dup, leader
    finally:
        selector.close()
        dup.close()
        listener.close()


def _connect(listener: socket.socket) -> socket.socket:
    return socket.create_connection(listener.getsockname())


def test_a_pending_connection_is_left_to_a_leader_that_takes_connections(
    parts: tuple[ParkingSelector, socket.socket, socket.socket, list[bool]],
) -> None:
    selector, listener, dup, _ = parts
    with _connect(listener):
        # An idle select waits on past the connection, to its timeout: nothing to do.
        assert selector.select_parked(0.05) == []
        assert not selector.got_any
        # The leader accepts it meanwhile: the socket goes back in, nothing pending.
        conn, _ = listener.accept()
        conn.close()
        assert selector.select_parked(3 * _selector.STANDBY_RECHECK) == []
        assert selector.standby[dup.fileno()].rearm_at is None


def test_a_stuck_leader_leaves_the_connection_to_the_stand_by_loop(
    parts: tuple[ParkingSelector, socket.socket, socket.socket, list[bool]],
) -> None:
    selector, listener, dup, leader = parts
    with _connect(listener):
        assert selector.select_parked(0) == []  # left to the leader
        leader[0] = False  # stuck: at the next look, the stand-by loop takes it
        events = selector.select_parked(1.0)
        assert [(key.data, mask) for key, mask in events] == [("accept", selectors.EVENT_READ)]
        assert selector.got_any
        conn, _ = dup.accept()
        conn.close()


def test_the_busy_path_screens_too(
    parts: tuple[ParkingSelector, socket.socket, socket.socket, list[bool]],
) -> None:
    # A busy loop polls with timeout 0 and screens what it got (Parking.select).
    selector, listener, _, leader = parts
    with _connect(listener):
        raw = _selector.base_select(selector, 1.0)
        assert len(raw) == 1
        assert selector.screen(raw) == []
        assert _selector.base_select(selector, 0) == []  # out of the set
        leader[0] = False
        time.sleep(_selector.STANDBY_RECHECK)  # its time out of the set is over
        assert len(selector.screen(_selector.base_select(selector, 0))) == 0  # back in...
        assert len(selector.screen(_selector.base_select(selector, 1.0))) == 1  # ...and seen


def test_a_wake_up_ends_a_stand_by_select(
    parts: tuple[ParkingSelector, socket.socket, socket.socket, list[bool]],
) -> None:
    selector, listener, _, _ = parts
    r, w = socket.socketpair()
    with r, w, _connect(listener):
        r.setblocking(False)
        selector.wake_sock, selector.wake_fd = r, r.fileno()
        selector.register(r.fileno(), selectors.EVENT_READ, "wake")
        assert selector.select_parked(0.01) == []  # the connection: left to the leader
        w.send(b"\0")
        assert selector.select_parked(None) == []  # ends, the byte read
        assert selector.got_any
        with pytest.raises(BlockingIOError):
            r.recv(1)
        selector.unregister(r.fileno())


def test_closed_stand_by_sockets_are_forgotten(
    parts: tuple[ParkingSelector, socket.socket, socket.socket, list[bool]],
) -> None:
    selector, listener, dup, _ = parts
    with _connect(listener):
        assert selector.select_parked(0) == []  # out of the set until rearm_at
        fd = dup.fileno()
        selector.unregister(fd)  # its server closed: unwatched, then closed
        dup.close()
        selector.rearm_at = 0.0
        assert selector.screen([]) == []
        assert fd not in selector.standby
        assert selector.select_parked(0) == []  # the plain path again


class _Leader:
    """Just what Parking.takes_connections reads of a worker."""

    def __init__(self, sock: socket.socket, permit: bool) -> None:
        selector = types.SimpleNamespace(watched={sock.fileno(): "accept"})
        self.selector = selector
        self.parked = False
        self.last_select = 0.0
        self.permit = types.SimpleNamespace(shared=False) if permit else None
        self.leader_sample: tuple[float, float] | None = None


@pytest.mark.parametrize("permit", [True, False])
def test_a_leader_that_computes_takes_connections_and_one_that_blocks_does_not(
    monkeypatch: pytest.MonkeyPatch, permit: bool
) -> None:
    # The leader last selected at 0. Each look gives the time and its thread's CPU time.
    from gorun import _parking, _permit

    looks = iter(
        [
            (0.005, 0.005),  # selected within STANDBY_RECHECK: takes them
            (0.020, 0.020),  # a long iteration, first look: wait for the next
            (0.030, 0.029),  # it computed since: busy, takes them
            (0.040, 0.0295),  # its thread hardly ran: blocked
            (0.050, 0.039),  # it computes again
            (0.500, 0.480),  # computing past COMPUTE_LIMIT: stuck
        ]
    )
    now = [0.0, 0.0]

    def clock() -> float:
        return now[0]

    monkeypatch.setattr(_parking, "perf_counter", clock)
    monkeypatch.setattr(_permit, "cpu_time", lambda _: now[1])
    with socket.create_server(("127.0.0.1", 0)) as sock:
        leader = _Leader(sock, permit)
        answers = []
        for now[0], now[1] in looks:
            answers.append(_parking.Parking.takes_connections(leader, sock))  # type: ignore[arg-type]
    if permit:
        assert answers == [True, True, True, False, True, False]
    else:  # no permit: a long iteration is a stuck leader, as a thief would see it
        assert answers == [True, False, False, False, False, False]
    leader.parked = True  # in its select, but its socket is closed: it takes none
    assert not _parking.Parking.takes_connections(leader, sock)  # type: ignore[arg-type]
