"""Serving on every worker: one listening socket per worker loop, on the same address.

A server made by ``loop.create_server`` accepts on the loop that made it, and every
connection's transport, protocol and handler stay there: one loop serves them all, and
the runtime's other workers idle. `create_server` and `start_server` instead serve the
address on every worker, and a connection is served entirely by the worker that
accepted it (asyncio's transports belong to one loop).

The first listener is made on the caller's own loop with the caller's arguments (``host``
may resolve to several addresses, ``port`` may be 0); every other worker then gets a
socket for each of its sockets (``_every.worker_socket``): on a free-threaded build a
twin bound to the same address and port with ``SO_REUSEPORT``, so that the kernel
spreads new connections over the workers; on a GIL build a stand-by duplicate of the
same socket, so that the caller's loop accepts while it can and the others only while
it is stuck (see ``_every.shares_listeners``). Each is served by an ``asyncio.Server`` of its own
worker's loop. `Server` holds them all and drives each on its own loop.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ._every import caller_worker, worker_socket
from ._thread_state import running_loop
from ._wakeup import call_in_loop

#: Arguments of ``loop.create_server`` that also apply to a server on a given socket.
_SOCK_KWARGS = ("ssl", "backlog", "ssl_handshake_timeout", "ssl_shutdown_timeout",
                "keep_alive")
_DEFAULT_BACKLOG = 100  # asyncio's


class Server:
    """Listeners on every worker of a runtime, serving one address, as one server.

    Made by [`gorun.create_server()`][gorun.create_server] and
    [`gorun.start_server()`][gorun.start_server]. It offers what ``asyncio.Server``
    offers, for all the listeners at once: ``close()``, ``wait_closed()``,
    ``serve_forever()``, ``start_serving()``, ``is_serving()``, ``sockets`` and
    ``async with``. Each listener is an ``asyncio.Server`` of its own worker's loop, and
    every operation on it runs there.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, parts: list[asyncio.Server]) -> None:
        self._loop = loop
        self._parts = parts
        self._serving_forever: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<gorun.Server sockets={self.sockets!r} listeners={len(self._parts)}>"

    @property
    def sockets(self) -> tuple[Any, ...]:
        """Every listening socket, of every worker."""
        return tuple(s for part in self._parts for s in part.sockets)

    @property
    def listeners(self) -> int:
        """How many ``asyncio.Server`` objects (one per worker and address) serve."""
        return len(self._parts)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop of the code that made this server."""
        return self._loop

    def is_serving(self) -> bool:
        """True while the listeners accept connections."""
        return any(part.is_serving() for part in self._parts)

    def close(self) -> None:
        """Stop every listener (each on its own loop); open connections stay open, as
        with ``asyncio.Server.close()``."""
        for part in self._parts:
            _call_on(part.get_loop(), part.close)

    async def wait_closed(self) -> None:
        """Wait until every listener is closed (and, as asyncio's, its connections)."""
        await asyncio.gather(*(_run_on(p.get_loop(), p.wait_closed) for p in self._parts))

    async def start_serving(self) -> None:
        """Start accepting on every worker (for servers made with ``start_serving=False``).

        The listeners of the caller's own loop start first, before the first await, as
        asyncio's do: a client that connects once ``serve_forever()`` has started is not
        refused (with the GIL, the other workers share their socket).
        """
        here = running_loop()
        others = []
        for part in self._parts:
            if part.get_loop() is here:
                await part.start_serving()
            else:
                others.append(part)
        await asyncio.gather(*(_run_on(p.get_loop(), _start_if_open, p) for p in others))

    async def serve_forever(self) -> None:
        """Accept on every worker until cancelled; then close the server, as asyncio's does.

        Raises:
            RuntimeError: it is already serving forever, or it is closed.
        """
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if not self._parts or all(p.sockets == () for p in self._parts):
            raise RuntimeError(f"server {self!r} is closed")
        self._serving_forever = self._loop.create_future()
        try:
            # Inside the try: cancelled while the other workers start, it still closes.
            await self.start_serving()
            await self._serving_forever
        finally:
            self._serving_forever = None
            self.close()
            await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    if sys.version_info >= (3, 13):

        def close_clients(self) -> None:
            """Close every open connection, on every worker."""
            for part in self._parts:
                _call_on(part.get_loop(), part.close_clients)

        def abort_clients(self) -> None:
            """Abort every open connection, on every worker."""
            for part in self._parts:
                _call_on(part.get_loop(), part.abort_clients)


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    every_worker: bool = True,
    **kwargs: Any,
) -> Server:
    """``loop.create_server``, with a listener on every worker of the caller's runtime.

    Each worker accepts connections on a listener of its own loop and calls
    *protocol_factory* there, so a connection's transport, protocol and the goroutines
    it starts stay on the worker that accepted it. On a free-threaded build each
    worker's listener has a socket of its own (``SO_REUSEPORT``: the kernel spreads new
    connections over them); on a GIL build they share one socket, which the caller's
    worker serves while its loop takes connections promptly, and the others only while
    it is stuck in a callback: with the GIL, spreading connections buys no CPU.
    Call it from code running on gorun (``gorun.run``, a ``gorun.Loop``, a goroutine).

    Args:
        protocol_factory: As for ``loop.create_server``; called on the accepting worker.
        host: As for ``loop.create_server``.
        port: As for ``loop.create_server``; 0 picks a free port, the same for every
            worker.
        every_worker: False: one listener, on the caller's loop, as asyncio does.
        **kwargs: Any other argument of ``loop.create_server`` (``ssl``, ``backlog``,
            ``start_serving``...). ``reuse_port`` is always on with *every_worker*.

    Raises:
        RuntimeError: not called from code running on gorun, or this platform has no
            ``SO_REUSEPORT`` (pass ``every_worker=False``, or run on Linux).
        OSError: the address could not be bound on some worker (then no listener is
            left open).
        ValueError: ``sock=`` with *every_worker* (each worker needs a socket of its
            own: pass *host* and *port*).
    """
    worker = caller_worker("create_server")
    loop: Any = worker.loop  # typeshed's overloads want a port even where asyncio's does not
    if not every_worker:
        return Server(loop, [await loop.create_server(protocol_factory, host, port, **kwargs)])
    _check_every_worker(kwargs)
    first = await loop.create_server(protocol_factory, host, port, reuse_port=True, **kwargs)
    parts = [first]
    try:
        for other in worker.runtime.workers:
            if other is worker:
                continue
            for sock in first.sockets:
                backlog = kwargs.get("backlog", _DEFAULT_BACKLOG)
                twin_sock = worker_socket(sock, backlog, worker, other)
                parts.append(await _run_on(other.loop, _serve_on, other.loop,
                                           protocol_factory, twin_sock, kwargs))
    except BaseException:
        server = Server(loop, parts)
        server.close()
        await server.wait_closed()
        raise
    return Server(loop, parts)


async def start_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                  Awaitable[None] | None],
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    limit: int = 2**16,
    every_worker: bool = True,
    **kwargs: Any,
) -> Server:
    """``asyncio.start_server``, with a listener on every worker of the caller's runtime.

    *client_connected_cb* runs on the worker that accepted the connection, with a
    ``StreamReader`` and ``StreamWriter`` of that worker's loop; see
    [`create_server()`][gorun.create_server] for the rest.

    Raises:
        RuntimeError, OSError, ValueError: as for
            [`create_server()`][gorun.create_server].
    """

    def factory() -> asyncio.StreamReaderProtocol:
        here = asyncio.get_running_loop()  # the accepting worker's loop
        reader = asyncio.StreamReader(limit=limit, loop=here)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=here)

    return await create_server(factory, host, port, every_worker=every_worker, **kwargs)


def _check_every_worker(kwargs: dict[str, Any]) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError(
            "every_worker=True needs SO_REUSEPORT, which this platform does not have: "
            "pass every_worker=False to serve on one loop"
        )
    if kwargs.get("sock") is not None:
        raise ValueError(
            "create_server(sock=...) with every_worker=True: each worker needs a "
            "listening socket of its own; pass host and port instead"
        )
    if kwargs.pop("reuse_port", True) is False:
        raise ValueError("every_worker=True binds with reuse_port; do not pass reuse_port=False")


async def _serve_on(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    sock: socket.socket,
    kwargs: dict[str, Any],
) -> asyncio.Server:
    # On *loop*: serve the twin socket *sock* there.
    passed = {k: v for k, v in kwargs.items() if k in _SOCK_KWARGS or k == "start_serving"}
    try:
        return await loop.create_server(protocol_factory, sock=sock, **passed)
    except BaseException:
        sock.close()
        raise


async def _start_if_open(part: asyncio.Server) -> None:
    # On part's loop: start it unless a close() posted meanwhile ran first (asyncio's
    # start_serving() would then fail, and leave it counted as serving).
    if part.sockets:
        await part.start_serving()


def _call_on(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    # fn() now when *loop* runs on this thread (close() then acts at once, as asyncio's
    # does), else on *loop*'s thread soon; nothing if that loop is closed.
    if running_loop() is loop:
        fn()
    else:
        call_in_loop(loop, fn)


async def _run_on(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any
) -> Any:
    # Await fn(*args) on *loop*, from this one.
    if asyncio.get_running_loop() is loop:
        return await fn(*args)
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(*args), loop))
