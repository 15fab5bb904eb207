"""Serving on every worker: gorun.start_server / gorun.create_server (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from typing import Any

import pytest

import gorun
from gorun._config import permit_enabled
from tests.support import TIMEOUT

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="every-worker serving needs SO_REUSEPORT"
)

PROCS = 3
#: Whether the workers share one listening socket (a GIL build, with the run permit) or
#: each has its own with SO_REUSEPORT (see gorun._every.shares_listeners).
SHARED = gorun._wakeup.GIL_ENABLED and permit_enabled()


async def _echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Echoes each line, prefixed with the name of the thread (worker) that serves it.
    where = threading.current_thread().name
    try:
        while line := await reader.readline():
            writer.write(f"{where} {line.decode()}".encode())
            await writer.drain()
    finally:
        writer.close()


async def _client(port: int, tag: str, lines: int) -> tuple[set[str], list[str]]:
    # One connection: sends *lines* lines, returns the serving threads and the replies.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    threads, replies = set(), []
    try:
        for i in range(lines):
            writer.write(f"{tag}-{i}\n".encode())
            await writer.drain()
            where, text = (await reader.readline()).decode().split(" ", 1)
            threads.add(where)
            replies.append(text.strip())
    finally:
        writer.close()
        await writer.wait_closed()
    return threads, replies


def test_connections_spread_over_workers_and_each_gets_its_own_replies() -> None:
    async def main() -> tuple[Counter[str], int, int]:
        async with await gorun.start_server(_echo_lines, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            assert {s.getsockname()[1] for s in server.sockets} == {port}
            clients = [_client(port, f"c{k}", 5) for k in range(60)]
            results = await asyncio.wait_for(asyncio.gather(*clients), TIMEOUT)
            per_thread: Counter[str] = Counter()
            for k, (threads, replies) in enumerate(results):
                assert replies == [f"c{k}-{i}" for i in range(5)]  # its own, in order
                assert len(threads) == 1  # one connection, one worker
                per_thread.update(threads)
            return per_thread, server.listeners, len(server.sockets)

    per_thread, listeners, sockets = gorun.run(main(), procs=PROCS)
    assert listeners == sockets == PROCS
    assert sum(per_thread.values()) == 60
    if not SHARED:
        # The kernel hashes each connection to a listener: 60 connections reach every
        # one of 3 workers unless the hash is badly broken (chance below 3 * (2/3)**60).
        assert len(per_thread) == PROCS, per_thread


def test_every_worker_accepts_while_the_others_are_blocked() -> None:
    # Each worker's first connection blocks its loop until every worker has one (a
    # barrier of PROCS): the barrier can only be passed if, with the other loops
    # blocked, the last free worker still accepts. The client opens one connection at a
    # time, and the next once the last one reached a worker: with a shared socket a
    # blocked loop accepts nothing and a free one takes it; with SO_REUSEPORT one that
    # the kernel hashes to a blocked worker waits there, so the client, after a while,
    # opens another.
    barrier = threading.Barrier(PROCS)
    arrived = threading.Semaphore(0)
    first: set[str] = set()
    lock = threading.Lock()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        where = threading.current_thread().name
        with lock:
            new = where not in first
            first.add(where)
        if new:
            arrived.release()
            barrier.wait(TIMEOUT)  # blocks this worker's loop
        writer.write(where.encode() + b"\n")
        await writer.drain()
        writer.close()

    def client(port: int) -> set[str]:
        # A plain thread: the home loop is one of the blocked workers.
        conns: list[socket.socket] = []
        reached = 0
        while reached < PROCS and len(conns) < 60:
            conns.append(socket.create_connection(("127.0.0.1", port), TIMEOUT))
            if arrived.acquire(timeout=TIMEOUT if SHARED else 0.2):
                reached += 1
        served = set()
        for conn in conns:
            with conn, conn.makefile("rb") as f:
                served.add(f.readline().decode().strip())
        return served

    async def main() -> set[str]:
        async with await gorun.start_server(handle, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            return await asyncio.to_thread(client, port)

    served = gorun.run(main(), procs=PROCS)
    assert served == {"MainThread", "gorun-worker-1", "gorun-worker-2"}
    assert not barrier.broken


def test_create_server_calls_the_factory_on_the_accepting_worker() -> None:
    made_on: list[str] = []  # the protocol's thread, then its transport's

    class Proto(asyncio.Protocol):
        def __init__(self) -> None:
            made_on.append(threading.current_thread().name)
            self.loop = asyncio.get_running_loop()

        def connection_made(self, transport: Any) -> None:
            made_on.append(threading.current_thread().name)  # the transport's thread
            transport.write(b"hi")
            transport.close()

    async def main() -> bool:
        server = await gorun.create_server(Proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        got = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return got == b"hi" and not server.is_serving()

    assert gorun.run(main(), procs=PROCS) is True
    factory_thread, transport_thread = made_on
    assert factory_thread == transport_thread


def test_every_worker_false_is_one_listener_on_the_callers_loop() -> None:
    async def main() -> tuple[int, set[str]]:
        async with await gorun.start_server(
            _echo_lines, "127.0.0.1", 0, every_worker=False
        ) as server:
            port = server.sockets[0].getsockname()[1]
            results = await asyncio.gather(*(_client(port, f"c{k}", 1) for k in range(10)))
            return server.listeners, set().union(*(t for t, _ in results))

    listeners, threads = gorun.run(main(), procs=PROCS)
    assert listeners == 1
    assert threads == {"MainThread"}


def test_serve_forever_serves_until_cancelled_then_closes_every_listener() -> None:
    async def main() -> tuple[list[str], bool]:
        server = await gorun.start_server(_echo_lines, "127.0.0.1", 0, start_serving=False)
        port = server.sockets[0].getsockname()[1]
        serving = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        listening = server.sockets
        assert len(listening) == PROCS
        _, replies = await asyncio.wait_for(_client(port, "x", 2), TIMEOUT)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        # Every listening socket of every worker is closed. (Not "a new connection is
        # refused": another test's listener may share an auto-picked port through
        # SO_REUSEPORT, and would accept it.)
        closed = all(s.fileno() == -1 for s in listening)
        return replies, closed and not server.is_serving() and server.sockets == ()

    assert gorun.run(main(), procs=PROCS) == (["x-0", "x-1"], True)


def test_a_port_in_use_is_an_error_and_leaves_no_listener() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]

    async def main() -> None:
        with pytest.raises(OSError, match=r"address already in use|Errno 98"):
            await gorun.start_server(_echo_lines, "127.0.0.1", port)

    with taken:
        gorun.run(main(), procs=PROCS)


def test_outside_gorun_is_a_clear_error() -> None:
    async def main() -> None:
        await gorun.start_server(_echo_lines, "127.0.0.1", 0)

    with pytest.raises(RuntimeError, match=r"call it from code running on gorun"):
        asyncio.run(main())


def test_bad_arguments_are_clear_errors() -> None:
    async def main() -> list[str]:
        errors = []
        with socket.socket() as sock:
            for kwargs in ({"sock": sock}, {"reuse_port": False}):
                try:
                    await gorun.create_server(asyncio.Protocol, **kwargs)
                except ValueError as exc:
                    errors.append(str(exc))
        return errors

    first, second = gorun.run(main(), procs=2)
    assert "each worker needs a listening socket of its own" in first
    assert "do not pass reuse_port=False" in second


def test_a_handler_that_raises_leaves_the_server_serving() -> None:
    # asyncio's own behaviour: the error goes to the loop's exception handler, the
    # connection is closed, the server goes on.
    seen: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if line == b"boom\n":
            writer.close()
            raise KeyError("boom")
        writer.write(line)
        await writer.drain()
        writer.close()

    def on_error(loop: Any, context: dict[str, Any]) -> None:
        seen.append(repr(context.get("exception")))

    async def main() -> bytes:
        asyncio.get_running_loop().set_exception_handler(on_error)
        async with await gorun.start_server(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            for line in (b"boom\n", b"ok\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(line)
                got = await reader.read()
                writer.close()
            return got

    assert gorun.run(main(), procs=2) == b"ok\n"


def test_closing_the_server_keeps_every_accepted_connection_serving() -> None:
    async def main() -> list[str]:
        server = await gorun.start_server(_echo_lines, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for k, (reader, writer) in enumerate(conns):
            writer.write(f"before-{k}\n".encode())
            await reader.readline()  # accepted and served
        server.close()  # stops accepting, on every worker
        replies = []
        for k, (reader, writer) in enumerate(conns):
            writer.write(f"after-{k}\n".encode())
            replies.append((await reader.readline()).decode().split(" ", 1)[1].strip())
            writer.close()
            await writer.wait_closed()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)
        return replies

    assert gorun.run(main(), procs=PROCS) == [f"after-{k}" for k in range(20)]
