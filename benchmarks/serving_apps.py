"""The apps that ``serving-uvicorn`` and ``serving-aiohttp`` serve, unmodified by gorun.

Each answers ``GET /`` after the same pure-Python work as ``serving-http``
(``cases_serving.work``). They are ordinary apps: gorun comes in only from the command
line that serves them (``uvicorn ... --loop gorun:new_event_loop``, ``python -m gorun``).

    python -m uvicorn benchmarks.serving_apps:starlette_app --port 8000
    python -m benchmarks.serving_apps aiohttp 8080    (or: python -m gorun -m ...)
    python -m benchmarks.serving_apps uvicorn-every-worker 8000 4
"""

from __future__ import annotations

import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from .cases_serving import work


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(work())


#: An ASGI app: Starlette, one route.
starlette_app = Starlette(routes=[Route("/", _hello)])


def run_aiohttp(port: int) -> None:
    """Serve the aiohttp app on *port* with ``web.run_app``, as an aiohttp program does."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=work(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run_uvicorn_every_worker(port: int, procs: int) -> None:
    """Serve the Starlette app with one ``uvicorn.Server`` per gorun worker."""
    import uvicorn

    import gorun

    async def main() -> None:
        with await gorun.listen("127.0.0.1", port) as listeners:
            await gorun.on_every_worker(serve_here, listeners)

    async def serve_here(listeners: gorun.Listeners) -> None:
        config = uvicorn.Config(starlette_app, log_level="warning", access_log=False,
                                http="h11", lifespan="off")
        await uvicorn.Server(config).serve(sockets=listeners.sockets())

    gorun.run(main(), procs=procs)


if __name__ == "__main__":
    if sys.argv[1:2] == ["aiohttp"] and len(sys.argv) == 3:
        run_aiohttp(int(sys.argv[2]))
    elif sys.argv[1:2] == ["uvicorn-every-worker"] and len(sys.argv) == 4:
        run_uvicorn_every_worker(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: python -m benchmarks.serving_apps aiohttp PORT\n"
                 "       python -m benchmarks.serving_apps uvicorn-every-worker PORT PROCS")
