"""Per-worker building blocks (gorun.on_every_worker, gorun.listen) and the recipes built on
them: a Starlette app under uvicorn and an aiohttp app, each served on every worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import gorun
from gorun._config import permit_enabled
from tests.support import TIMEOUT

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="serving on every worker needs SO_REUSEPORT"
)

PROCS = 3
#: One shared listening socket (GIL build, run permit) or one each (see test_serve).
SHARED = gorun._wakeup.GIL_ENABLED and permit_enabled()


# -- on_every_worker ------------------------------------------------------------------------


def test_runs_once_on_each_worker_in_worker_order() -> None:
    async def where(tag: str) -> tuple[str, str, bool]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        # A goroutine kept on its worker: still on the same loop after an await.
        return tag, threading.current_thread().name, asyncio.get_running_loop() is loop

    async def main() -> list[tuple[str, str, bool]]:
        return await gorun.on_every_worker(where, "x")

    results = gorun.run(main(), procs=PROCS)
    assert results == [
        ("x", "MainThread", True),
        ("x", "gorun-worker-1", True),
        ("x", "gorun-worker-2", True),
    ]


def test_a_failure_cancels_the_others_and_waits_for_them() -> None:
    cleaned: list[str] = []
    # Every call starts before the failure: one not started yet is cancelled without
    # running at all (and has no finally to run).
    started = threading.Barrier(PROCS)

    async def setup() -> None:
        name = threading.current_thread().name
        started.wait(TIMEOUT)
        if name == "gorun-worker-1":
            raise ValueError("no pool for worker 1")
        try:
            await asyncio.sleep(TIMEOUT)
        finally:
            cleaned.append(name)

    async def main() -> tuple[ExceptionGroup[Exception], int]:
        with pytest.raises(ExceptionGroup) as info:
            await gorun.on_every_worker(setup)
        return info.value, gorun.num_goroutine()

    group, left = gorun.run(main(), procs=PROCS)
    assert [type(e) for e in group.exceptions] == [ValueError]
    assert sorted(cleaned) == ["MainThread", "gorun-worker-2"]  # before it raised
    assert left == 0


def test_cancelling_the_caller_cancels_every_call_and_waits() -> None:
    cleaned: list[str] = []
    started = threading.Barrier(PROCS + 1)

    async def serve() -> None:
        started.wait(TIMEOUT)  # blocks this loop, once: all have started
        try:
            await asyncio.sleep(TIMEOUT)
        finally:
            await asyncio.sleep(0)  # cleanup that awaits
            cleaned.append(threading.current_thread().name)

    async def main() -> tuple[int, int]:
        task = asyncio.ensure_future(gorun.on_every_worker(serve))
        await asyncio.to_thread(started.wait, TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(cleaned), gorun.num_goroutine()

    assert gorun.run(main(), procs=PROCS) == (PROCS, 0)


def test_bad_input_and_misuse() -> None:
    def not_async() -> int:
        return 1

    async def main() -> None:
        with pytest.raises(TypeError, match="pass the function, not a call"):
            await gorun.on_every_worker(object())  # type: ignore[arg-type]
        with pytest.raises(ExceptionGroup) as info:
            await gorun.on_every_worker(not_async)  # type: ignore[arg-type]
        assert all(isinstance(e, TypeError) and "not an awaitable" in str(e)
                   for e in info.value.exceptions)

    gorun.run(main(), procs=2)

    async def on_asyncio() -> None:
        async def nothing() -> None:
            pass

        with pytest.raises(RuntimeError, match="call it from code running on gorun"):
            await gorun.on_every_worker(nothing)
        with pytest.raises(RuntimeError, match="call it from code running on gorun"):
            await gorun.listen("127.0.0.1", 0)

    asyncio.run(on_asyncio())


# -- listen ---------------------------------------------------------------------------------


def test_listen_gives_each_worker_its_own_socket_on_one_port() -> None:
    async def mine(listeners: gorun.Listeners) -> socket.socket:
        (sock,) = listeners.sockets()
        assert listeners.sockets() == [sock]  # the same ones, each time
        return sock

    async def main() -> tuple[list[tuple[int, int]], int, list[socket.socket]]:
        with await gorun.listen("127.0.0.1", 0) as listeners:
            socks = await gorun.on_every_worker(mine, listeners)
            got = [(s.fileno(), s.getsockname()[1]) for s in socks]
            port = listeners.port
        with pytest.raises(RuntimeError, match="closed"):
            listeners.sockets()
        return got, port, socks

    got, port, socks = gorun.run(main(), procs=PROCS)
    assert len({fd for fd, _ in got}) == PROCS  # a socket of its own each
    assert {p for _, p in got} == {port}
    assert all(s.fileno() == -1 for s in socks)  # close() closed every worker's


def test_listen_errors_leave_nothing_open() -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(OSError, match="error while attempting to bind"):
                await gorun.listen("127.0.0.1", port)
        with pytest.raises(TypeError, match="port must be an int"):
            await gorun.listen("127.0.0.1", "80")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="backlog must be an int"):
            await gorun.listen("127.0.0.1", 0, backlog=1.5)  # type: ignore[arg-type]

    before = _open_sockets()
    gorun.run(main(), procs=PROCS)
    assert _open_sockets() == before


@pytest.mark.skipif(not SHARED, reason="stand-by listeners: a GIL build with the run permit")
def test_the_listening_worker_accepts_and_the_others_take_over_when_it_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a shared socket, the worker that called listen() accepts every connection
    # while its loop takes them promptly (in its select, or it selected within the
    # recheck time, made long here so that a slow machine cannot make it look stuck);
    # once it stops serving, the stand-by workers accept.
    monkeypatch.setattr(gorun._parking, "STANDBY_RECHECK", 1.0)
    ready: gorun.Chan[None] = gorun.Chan(PROCS)
    stop_home: gorun.Chan[None] = gorun.Chan()
    stop: gorun.Chan[None] = gorun.Chan()
    home_closed: gorun.Chan[None] = gorun.Chan(1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(threading.current_thread().name.encode() + b"\n")
        await writer.drain()
        writer.close()

    async def serve(listeners: gorun.Listeners) -> None:
        (sock,) = listeners.sockets()
        home = threading.current_thread() is threading.main_thread()
        async with await asyncio.start_server(handle, sock=sock):
            await ready.send(None)
            await (stop_home if home else stop).recv_ok()
        if home:
            await home_closed.send(None)

    def client(port: int, n: int) -> Counter[str]:
        served: Counter[str] = Counter()
        for _ in range(n):  # one at a time: each after the last was served
            with socket.create_connection(("127.0.0.1", port), TIMEOUT) as conn, \
                    conn.makefile("rb") as f:
                served[f.readline().decode().strip()] += 1
        return served

    async def main() -> tuple[Counter[str], Counter[str]]:
        with await gorun.listen("127.0.0.1", 0) as listeners:
            serving = asyncio.ensure_future(gorun.on_every_worker(serve, listeners))
            for _ in range(PROCS):
                await ready.recv()
            first = await asyncio.to_thread(client, listeners.port, 20)
            stop_home.close()  # the home worker's server closes its socket
            await home_closed.recv()
            second = await asyncio.to_thread(client, listeners.port, 20)
            stop.close()
            await asyncio.wait_for(serving, TIMEOUT)
        return first, second

    first, second = gorun.run(main(), procs=PROCS)
    assert first == {"MainThread": 20}
    assert sum(second.values()) == 20
    assert set(second) <= {"gorun-worker-1", "gorun-worker-2"}, second


def _open_sockets() -> int:
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
    return count


# -- the recipes: a client -------------------------------------------------------------------


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, q: str) -> Any:
    writer.write(f"GET /?q={q} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return json.loads(await reader.readexactly(length))


async def _clients(port: int, connections: int, requests: int) -> Counter[str]:
    # Every connection sends *requests* requests and checks each reply; returns the
    # connections each worker served.
    async def one(n: int) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        workers = set()
        try:
            for i in range(requests):
                reply = await _get(reader, writer, f"c{n}r{i}")
                assert reply["echo"] == f"c{n}r{i}"  # its own reply
                assert reply["state_of"] == reply["thread"]  # its worker's state
                workers.add(reply["thread"])
        finally:
            writer.close()
            await writer.wait_closed()
        (worker,) = workers
        return str(worker)

    done = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(connections))),
                                  TIMEOUT)
    return Counter(done)


# -- uvicorn + Starlette ----------------------------------------------------------------------


def test_starlette_under_uvicorn_on_every_worker() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lifespans: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        name = threading.current_thread().name
        lifespans.append(name)
        yield {"lock": asyncio.Lock(), "owner": name}  # this worker's state
        lifespans.append(f"{name} shut down")

    async def hello(request: Request) -> JSONResponse:
        async with request.state.lock:  # a Lock of this worker's loop
            pass
        return JSONResponse({"echo": request.query_params["q"],
                             "thread": threading.current_thread().name,
                             "state_of": request.state.owner})

    app = Starlette(routes=[Route("/", hello)], lifespan=lifespan)
    servers: list[Any] = []

    async def serve(listeners: gorun.Listeners) -> None:
        server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
        servers.append(server)
        try:
            await server.serve(sockets=listeners.sockets())
        finally:
            for s in servers:  # one stopping stops all
                s.should_exit = True

    async def main() -> Counter[str]:
        with await gorun.listen("127.0.0.1", 0) as listeners:
            serving = asyncio.ensure_future(gorun.on_every_worker(serve, listeners))
            served = await _clients(listeners.port, 36, 3)
            servers[0].should_exit = True  # graceful shutdown of all
            await asyncio.wait_for(serving, TIMEOUT)
        return served

    served = gorun.run(main(), procs=PROCS)
    assert sum(served.values()) == 36
    if not SHARED:
        assert len(served) == PROCS, served  # below 3 * (2/3)**36 by chance
    assert sorted(lifespans) == sorted(
        [f"gorun-worker-{i}" for i in (1, 2)] + ["MainThread"]
        + [f"{w} shut down" for w in ("MainThread", "gorun-worker-1", "gorun-worker-2")]
    )


# -- aiohttp ---------------------------------------------------------------------------------


def test_aiohttp_app_runner_with_a_site_per_worker() -> None:
    pytest.importorskip("aiohttp")
    from aiohttp import web

    lock_key = web.AppKey("lock", asyncio.Lock)
    owner_key = web.AppKey("owner", str)
    startups: list[str] = []

    async def on_startup(app: web.Application) -> None:  # runs on every worker
        app[lock_key] = asyncio.Lock()
        app[owner_key] = threading.current_thread().name
        startups.append(app[owner_key])

    async def hello(request: web.Request) -> web.Response:
        async with request.app[lock_key]:
            pass
        return web.json_response({"echo": request.query["q"],
                                  "thread": threading.current_thread().name,
                                  "state_of": request.app[owner_key]})

    def make_app() -> web.Application:
        app = web.Application()
        app.router.add_get("/", hello)
        app.on_startup.append(on_startup)
        return app

    stop: gorun.Chan[None] = gorun.Chan()  # closed to stop every worker's site

    async def serve(listeners: gorun.Listeners) -> None:
        runner = web.AppRunner(make_app())  # an app per worker: aiohttp's are per loop
        await runner.setup()
        try:
            for sock in listeners.sockets():
                await web.SockSite(runner, sock).start()
            await stop.recv_ok()  # until closed
        finally:
            await runner.cleanup()

    async def main() -> Counter[str]:
        with await gorun.listen("127.0.0.1", 0) as listeners:
            serving = asyncio.ensure_future(gorun.on_every_worker(serve, listeners))
            served = await _clients(listeners.port, 36, 3)
            stop.close()
            await asyncio.wait_for(serving, TIMEOUT)
        return served

    served = gorun.run(main(), procs=PROCS)
    assert sum(served.values()) == 36
    if not SHARED:
        assert len(served) == PROCS, served
    assert sorted(startups) == ["MainThread", "gorun-worker-1", "gorun-worker-2"]
