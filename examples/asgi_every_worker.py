"""An ASGI app (Starlette) served by uvicorn on every worker, and a local client to try it.

``gorun.listen`` binds the address once and gives each worker a listening socket of its
own on it (see ``echo_every_worker.py``); ``gorun.on_every_worker`` runs one ``uvicorn.Server`` per
worker, each on its own loop. The app's lifespan runs on every worker, so what it makes
(here an ``asyncio.Lock`` and a counter, in a real app a connection pool) belongs to
that worker's loop, and each request sees its own worker's through ``request.state``.

The client opens 32 keep-alive connections at once, sends a few requests on each,
checks that every reply is its own and that each connection stays on one worker, then
prints how many connections each worker served and stops every server gracefully.

Run it from the repository root (it needs ``pip install uvicorn starlette``)::

    python examples/asgi_every_worker.py            # one worker per CPU, or $GORUN_PROCS
    python examples/asgi_every_worker.py --serve    # serve on port 8000 until Ctrl-C

The same app can also be served by ``uvicorn asgi_every_worker:app --loop
gorun:new_event_loop`` (one loop accepts, gorun's workers run the goroutines).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import gorun

CONNECTIONS = 32
REQUESTS = 4


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Runs on every worker: the state it yields is that worker's, bound to its loop."""
    worker = threading.current_thread().name
    yield {"lock": asyncio.Lock(), "served": Counter[str](), "worker": worker}


async def hello(request: Request) -> JSONResponse:
    """Count the request in this worker's state (under this worker's lock)."""
    async with request.state.lock:
        request.state.served["requests"] += 1
        count = request.state.served["requests"]
    return JSONResponse(
        {"echo": request.query_params.get("q", ""), "worker": request.state.worker,
         "thread": threading.current_thread().name, "count": count}
    )


app = Starlette(routes=[Route("/", hello)], lifespan=lifespan)


class EveryWorker:
    """One ``uvicorn.Server`` per gorun worker, on sockets from ``gorun.listen``."""

    def __init__(self, app: Any, listeners: gorun.Listeners, **config: Any) -> None:
        self.app, self.listeners, self.config = app, listeners, config
        self.servers: list[uvicorn.Server] = []

    async def serve(self) -> None:
        """Serve on every worker until `stop()` (or Ctrl-C) stops them all."""
        await gorun.on_every_worker(self._serve_here)

    def stop(self) -> None:
        """Shut every server down gracefully (each on its own loop, within 0.1 s)."""
        for server in self.servers:
            server.should_exit = True

    async def _serve_here(self) -> None:
        # On each worker: a Config of its own (uvicorn loads it in place) and a server.
        server = uvicorn.Server(uvicorn.Config(self.app, **self.config))
        self.servers.append(server)
        try:
            await server.serve(sockets=self.listeners.sockets())
        finally:
            # Ctrl-C reaches the main thread's server only: it stops the others.
            self.stop()


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, q: str) -> Any:
    """One HTTP/1.1 keep-alive request for ``/?q=...``; returns the decoded JSON."""
    import json

    writer.write(f"GET /?q={q} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"request {q}: {head!r}")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return json.loads(await reader.readexactly(length))


async def client(port: int, n: int) -> str:
    """One connection: REQUESTS requests, each checked; returns the serving worker."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    workers = set()
    try:
        for i in range(REQUESTS):
            reply = await get(reader, writer, f"c{n}r{i}")
            if reply["echo"] != f"c{n}r{i}":
                raise AssertionError(f"client {n} got someone else's reply: {reply}")
            if reply["worker"] != reply["thread"]:
                raise AssertionError(f"state of another worker's loop was used: {reply}")
            workers.add(reply["worker"])
    finally:
        writer.close()
        await writer.wait_closed()
    (worker,) = workers  # a connection stays on one worker
    return str(worker)


async def demo() -> None:
    with await gorun.listen("127.0.0.1", 0) as listeners:
        servers = EveryWorker(app, listeners, log_level="warning", lifespan="on")
        serving = asyncio.ensure_future(servers.serve())
        try:
            served = Counter(await asyncio.gather(*(client(listeners.port, n)
                                                    for n in range(CONNECTIONS))))
        finally:
            servers.stop()
            await serving
    print(f"{CONNECTIONS} connections x {REQUESTS} requests, every reply checked, served by:")
    for worker, n in sorted(served.items()):
        print(f"  {worker}: {n} connections")
    print(f"{len(servers.servers)} uvicorn servers (one per worker) stopped gracefully")


async def serve_forever() -> None:
    with await gorun.listen("0.0.0.0", 8000) as listeners:
        print(f"serving http://localhost:8000/?q=hi on {gorun.procs()} workers; Ctrl-C stops")
        await EveryWorker(app, listeners, lifespan="on").serve()


if __name__ == "__main__":
    if "--serve" in sys.argv[1:]:
        # uvicorn shuts down on Ctrl-C, then raises it again for the program, as
        # uvicorn.run() does (which then exits quietly).
        with contextlib.suppress(KeyboardInterrupt):
            gorun.run(serve_forever())
    else:
        gorun.run(demo())
