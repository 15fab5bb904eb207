"""TCP echo over loopback: 100 connections, each with one 64-byte request in flight.

The server runs in the benchmark process; the client runs in a separate interpreter
(``python -m benchmarks.cases_tcp client PORT CONNS REQUESTS``, on uvloop where it is
installed, with plain protocols, so that it costs as little as it can). The client opens
every connection first, then times from its first request to its last reply; one
operation is one request answered.

Servers: ``asyncio.start_server`` with a streams handler on a plain asyncio loop, on
uvloop, and on gorun with one worker (the same code); and gorun's own idiom, an accept
loop that starts one goroutine per connection (``go(handle(conn))``) on P workers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import gorun

from ._harness import Case, Goal, Target, gil_enabled, has_uvloop

HOST = "127.0.0.1"
CONNS = 100
MESSAGE = b"x" * 63 + b"\n"


# -- client (separate process) ------------------------------------------------------------


class _EchoClient(asyncio.Protocol):
    """Sends MESSAGE, waits for all of it to come back, *left* times."""

    def __init__(self, left: int, done: asyncio.Future[None]) -> None:
        self.left = left
        self.done = done
        self.pending = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self) -> None:
        assert self.transport is not None
        self.pending = len(MESSAGE)
        self.transport.write(MESSAGE)

    def data_received(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.pending > 0:
            return
        self.left -= 1
        if self.left:
            self.send()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("server closed the connection"))


async def _client(port: int, conns: int, per_conn: int) -> float:
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(conns):
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            functools.partial(_EchoClient, per_conn, done), HOST, port)
        clients.append(proto)
    start = time.perf_counter()
    for c in clients:
        c.send()
    await asyncio.gather(*(c.done for c in clients))
    elapsed = time.perf_counter() - start
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    return elapsed


def client_main(port: int, conns: int, requests: int) -> None:
    """Run the client and print its figures as JSON."""
    per_conn = max(1, requests // conns)
    coro = _client(port, conns, per_conn)
    try:
        import uvloop
    except ImportError:
        elapsed = asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            elapsed = runner.run(coro)
    print(json.dumps({"seconds": elapsed, "requests": per_conn * conns}), flush=True)


def run_client(port: int, requests: int) -> float:
    """Run the client process against *port*; return its seconds scaled to *requests*."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cases_tcp", "client", str(port), str(CONNS),
         str(requests)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise RuntimeError(f"echo client failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return float(figures["seconds"]) * requests / int(figures["requests"])


# -- servers ------------------------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve_streams(n: int) -> float:
    """``asyncio.start_server`` on the running loop; the client runs from a thread."""
    server = await asyncio.start_server(_echo, HOST, 0, backlog=CONNS * 2)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await asyncio.to_thread(run_client, port, n)


async def _handle(conn: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=conn)
    await _echo(reader, writer)


async def _serve_goroutines(n: int) -> float:
    """An accept loop on this loop; one go() goroutine per connection, on any worker."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server((HOST, 0), backlog=CONNS * 2)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    client = asyncio.ensure_future(asyncio.to_thread(run_client, port, n))
    handlers = []
    with listener:
        for _ in range(CONNS):
            conn, _ = await loop.sock_accept(listener)
            handlers.append(gorun.go(_handle(conn)))
    elapsed = await client
    for h in handlers:
        await h
    return elapsed


def on_asyncio(n: int) -> float:
    """The streams server on a plain asyncio loop."""
    return asyncio.run(_serve_streams(n))


def on_uvloop(n: int) -> float:
    """The streams server on uvloop."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve_streams(n))


def on_gorun(n: int, procs: int, serve: Callable[[int], Coroutine[Any, Any, float]]) -> float:
    """A gorun server (*serve*) under ``gorun.run`` with *procs* workers."""
    return gorun.run(serve(n), procs=procs)


def cases(procs: int) -> list[Case]:
    """The echo case; the goroutine-per-connection server runs on *procs* workers."""
    base = "asyncio.start_server, one loop"
    one = "gorun procs=1, asyncio.start_server"
    many = f"gorun procs={procs}, go() per connection"
    peers: dict[str, Callable[[int], float]] = {base: on_asyncio}
    if has_uvloop():
        peers["uvloop, asyncio.start_server"] = on_uvloop
    peers[one] = lambda n: on_gorun(n, 1, _serve_streams)
    peers[many] = lambda n: on_gorun(n, procs, _serve_goroutines)
    note = "GIL build: requests/s >= 1.0x one asyncio loop"
    targets: list[Goal] = [Target(one, base, 1.0, note=note), Target(many, base, 1.0, note=note)]
    if not gil_enabled():
        targets = []  # the goal is set for GIL builds only
    return [
        Case(
            name="tcp-echo",
            description=f"TCP echo, {CONNS} connections over loopback, client in another "
            "process",
            unit="request",
            baseline=base,
            peers=peers,
            ops=40_000,
            quick_ops=6_000,
            targets=targets,
            rate="requests/s",
        )
    ]


if __name__ == "__main__":
    if sys.argv[1:2] != ["client"] or len(sys.argv) != 5:
        sys.exit("usage: python -m benchmarks.cases_tcp client PORT CONNS REQUESTS")
    client_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
