"""Streams, sockets, datagrams, readers and subprocesses on the case's loop."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any, cast

import pytest

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"


def test_tcp_echo_streams(runner: Backend) -> None:
    async def case() -> tuple[bytes, bytes, list[str]]:
        log: list[str] = []
        handled: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await reader.readline()
                log.append(f"server got {line!r}")
                writer.write(line.upper())
                await writer.drain()
            finally:
                writer.close()
                await writer.wait_closed()
                handled.set_result(None)

        server = await asyncio.start_server(handle, HOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(b"hello\n")
                await writer.drain()
                reply = await reader.readline()
                rest = await reader.read()
            finally:
                writer.close()
                await writer.wait_closed()
            await handled
        return reply, rest, log

    assert runner.run(case) == (b"HELLO\n", b"", ["server got b'hello\\n'"])


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_raw_sockets_loopback(runner: Backend) -> None:
    async def case() -> tuple[bytes, bytes, bytes]:
        loop = asyncio.get_running_loop()
        with socket.socket() as listener, socket.socket() as client:
            listener.bind((HOST, 0))
            listener.listen()
            listener.setblocking(False)
            client.setblocking(False)
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await accepting
            with conn:
                await loop.sock_sendall(client, b"ping")
                got = await _recv_exactly(loop, conn, 4)
                await loop.sock_sendall(conn, b"pong")
                reply = await _recv_exactly(loop, client, 4)
                client.shutdown(socket.SHUT_WR)
                eof = await loop.sock_recv(conn, 10)
        return got, reply, eof

    assert runner.run(case) == (b"ping", b"pong", b"")


def test_raw_sockets_socketpair_recv_into(runner: Backend) -> None:
    async def case() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            await loop.sock_sendall(a, b"abcdef")
            buf = bytearray(6)
            got = 0
            while got < 6:
                n = await loop.sock_recv_into(b, memoryview(buf)[got:])
                if n == 0:
                    break
                got += n
        return bytes(buf[:got])

    assert runner.run(case) == b"abcdef"


class _EchoServer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data[::-1], addr)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.reply: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


def test_udp_datagram_roundtrip(runner: Backend) -> None:
    async def case() -> bytes:
        loop = asyncio.get_running_loop()
        server_transport, server = await loop.create_datagram_endpoint(
            _EchoServer, local_addr=(HOST, 0)
        )
        try:
            addr = server_transport.get_extra_info("sockname")
            client_transport, client = await loop.create_datagram_endpoint(
                _Client, remote_addr=addr
            )
            try:
                client_transport.sendto(b"datagram")
                reply = await asyncio.wait_for(client.reply, timeout=10)
            finally:
                client_transport.close()
                await client.closed
        finally:
            server_transport.close()
            await server.closed
        return reply

    assert runner.run(case) == b"margatad"


def test_add_reader_on_socketpair(runner: Backend) -> None:
    async def case() -> tuple[bytes, bool, bool]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            got: asyncio.Future[bytes] = loop.create_future()

            def on_readable() -> None:
                data = a.recv(100)
                if not got.done():
                    got.set_result(data)

            loop.add_reader(a, on_readable)
            try:
                b.send(b"ready")
                data = await got
            finally:
                removed = loop.remove_reader(a)
            removed_again = loop.remove_reader(a)
        if any(c.__module__.startswith("uvloop") for c in type(loop).__mro__):
            # uvloop (GORUN_LOOP=uvloop workers) returns None from remove_reader.
            removed = True if removed is None else removed
            removed_again = False if removed_again is None else removed_again
        return data, removed, removed_again

    assert runner.run(case) == (b"ready", True, False)


def test_subprocess_exec_stdout(runner: Backend) -> None:
    async def case() -> tuple[bytes, bytes | None, int | None]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print(42)", stdout=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        return out.strip(), err, proc.returncode

    assert runner.run(case) == (b"42", None, 0)


def test_subprocess_stdin_roundtrip_and_exit_code(runner: Backend) -> None:
    script = "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.exit(3)"

    async def case() -> tuple[bytes, int | None]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate(b"gorun")
        return out, await proc.wait()

    assert runner.run(case) == (b"GORUN", 3)


def test_reader_fires_while_the_loop_is_busy(runner: Backend) -> None:
    # A loop that always has callbacks ready still watches its files at every
    # iteration (gorun skips the poll only for a loop that watches no file).
    async def case() -> bool:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            got: asyncio.Future[bytes] = loop.create_future()

            def on_readable() -> None:
                if not got.done():
                    got.set_result(a.recv(100))

            loop.add_reader(a, on_readable)
            try:
                b.send(b"ready")
                spins = 0
                while not got.done() and spins < 1000:  # never idle: sleep(0) only
                    spins += 1
                    await asyncio.sleep(0)
            finally:
                loop.remove_reader(a)
        return got.done() and spins <= 5

    assert runner.run(case) is True
