"""Per-worker building blocks: run a coroutine on every worker, and listen on every worker.

An object bound to one loop (a connection pool, an ``asyncio.Lock``, a server of a
framework) cannot be shared by the workers: each worker needs its own, made on its own
loop. `on_every_worker` runs a coroutine function once on each worker's loop (a startup
hook, or a framework's serve function), and `listen` binds an address once and hands
each worker a listening socket of its own on it (see `shares_listeners`), for servers
that take sockets (``uvicorn.Server.serve(sockets=...)``, aiohttp's ``SockSite``).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._go import start_on
from ._goroutine import Goroutine
from ._thread_state import current_worker, running_loop
from ._worker import Worker

T = TypeVar("T")

_DEFAULT_BACKLOG = 100  # asyncio's


def caller_worker(what: str) -> Worker:
    """The gorun worker whose loop runs the caller; RuntimeError naming *what* if none."""
    worker = current_worker()
    if worker is None or worker.loop is not running_loop():
        raise RuntimeError(
            f"gorun.{what}() works on the workers of the gorun runtime it is called "
            "from: call it from code running on gorun (gorun.run(), a gorun.Loop, a "
            "goroutine)"
        )
    return worker


async def on_every_worker(fn: Callable[..., Awaitable[T]], *args: Any) -> list[T]:
    """Run ``await fn(*args)`` once on every worker of the caller's runtime, at once.

    Each call runs as a goroutine kept on its worker (as with ``go(..., local=True)``),
    so what it makes (a pool, a lock, a server of a framework) belongs to that worker's
    loop. Use it for a startup hook that every worker needs, or to run a server's own
    serve function on every worker.

    Returns:
        The results, in worker order (the first is that of worker 0, the home loop).

    Raises:
        TypeError: *fn* is not callable, or a call of it did not return an awaitable.
        RuntimeError: not called from code running on gorun.
        ExceptionGroup: a call raised: the others are cancelled, as in a TaskGroup (one
            that has not started yet never runs), and every failure is in the group.
    """
    if not callable(fn):
        raise TypeError(
            f"on_every_worker() needs a coroutine function, got {type(fn).__name__}; "
            "pass the function, not a call of it (on_every_worker(setup), not setup())"
        )
    worker = caller_worker("on_every_worker")
    name = getattr(fn, "__qualname__", repr(fn))
    gs: list[Goroutine[T]] = []
    try:
        for w in worker.runtime.workers:
            gs.append(start_on(_call(fn, args, name), w, name=f"{name}@worker{w.index}"))
        # TaskGroup's rules: the first failure cancels the others, and every one is
        # waited for (awaiting a goroutine that is cancelled waits for it to end).
        async with asyncio.TaskGroup() as tg:
            for g in gs:
                tg.create_task(_join(g))
    except BaseException:
        for g in gs:
            g.cancel()
        raise
    return [g.result() for g in gs]


async def _join(g: Goroutine[T]) -> T:
    return await g


async def _call(fn: Callable[..., Awaitable[T]], args: Any, name: str) -> T:
    # On the target worker, as a goroutine there.
    aw = fn(*args)
    if not isinstance(aw, Awaitable):
        raise TypeError(
            f"on_every_worker(): {name}() returned {type(aw).__name__}, not an "
            "awaitable; pass an async function"
        )
    return await aw


class Listeners:
    """One address, bound once, with listening sockets of their own for every worker.

    Made by [`gorun.listen()`][gorun.listen], which makes every worker's sockets at
    once, one per bound address and worker. On a free-threaded build each is bound to
    the address with ``SO_REUSEPORT``, and the kernel spreads new connections over the
    workers; on a GIL build they are duplicates of one socket, and the worker that
    called ``listen()`` accepts the connections while its loop takes them promptly, the
    others only while it is stuck in a callback (with the GIL, spreading connections
    buys no CPU).
    ``sockets()``, called on a worker, returns that worker's; hand them to a server that
    takes sockets, on that worker. A connection the kernel gives to a worker whose
    server has not started yet waits in that socket's backlog: every worker must serve
    its own sockets. ``close()`` (or leaving a ``with`` block) closes them all; a server that
    closed them already does no harm.
    """

    def __init__(
        self, by_worker: dict[Worker, list[socket.socket]], first: list[socket.socket]
    ) -> None:
        self._lock = threading.Lock()
        # Guarded by _lock: whether close() ran.
        self._closed = False
        self._by_worker = by_worker  # never changed: read without the lock
        self._addresses = [s.getsockname() for s in first]

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"workers={len(self._by_worker)}"
        return f"<gorun.Listeners {self.addresses!r} {state}>"

    @property
    def addresses(self) -> list[Any]:
        """The bound addresses (``getsockname()`` of each socket of the worker that bound
        them, as bound: still known once a server closed the sockets)."""
        return list(self._addresses)

    @property
    def port(self) -> int:
        """The bound port (the one picked, for ``port=0``)."""
        return int(self.addresses[0][1])

    def sockets(self) -> list[socket.socket]:
        """The calling worker's listening sockets (one per bound address).

        Raises:
            RuntimeError: not called from code running on a worker of the runtime that
                called `listen()`, or closed.
        """
        worker = caller_worker("Listeners.sockets")
        mine = self._by_worker.get(worker)
        if mine is None:
            raise RuntimeError(
                f"{self!r} was made for the workers of another gorun runtime: call "
                "gorun.listen() in the runtime that serves"
            )
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
        return list(mine)

    def close(self) -> None:
        """Close every worker's sockets (a server that serves one must be closed first)."""
        with self._lock:
            self._closed = True
            made = list(self._by_worker.values())
        for socks in made:
            for s in socks:
                s.close()

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def listen(
    host: str | None,
    port: int,
    *,
    family: int = socket.AF_UNSPEC,
    backlog: int = _DEFAULT_BACKLOG,
) -> Listeners:
    """Bind *host*:*port* for serving on every worker; see [`Listeners`][gorun.Listeners].

    The address is resolved and bound now, on the caller's worker, as
    ``loop.create_server`` would bind it (``host=None``: every interface; ``port=0``: a
    free port, the same for every worker). Each worker then gets its own listening
    socket on it from ``listeners.sockets()``, for a server that takes sockets:
    ``uvicorn.Server(config).serve(sockets=listeners.sockets())``, or aiohttp's
    ``web.SockSite(runner, sock)``. See the guide's "Serving on every worker".

    Raises:
        RuntimeError: not called from code running on gorun, or this platform has no
            ``SO_REUSEPORT``.
        OSError: the address could not be bound (nothing is left open).
        TypeError: *port* or *backlog* is not an int.
    """
    worker = caller_worker("listen")
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError(
            "gorun.listen() gives every worker a socket on one address with "
            "SO_REUSEPORT, which this platform does not have: serve on one loop instead"
        )
    for what, value in (("port", port), ("backlog", backlog)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"listen() {what} must be an int, got {type(value).__name__}")
    infos = await worker.loop.getaddrinfo(
        host, port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    first: list[socket.socket] = []
    by_worker: dict[Worker, list[socket.socket]] = {worker: first}
    try:
        for af, socktype, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(af, socktype, proto)
            first.append(sock)
            _bind(sock, addr, backlog, v6only=True)
        for other in worker.runtime.workers:
            if other is not worker:
                by_worker[other] = mine = []
                for sock in first:
                    mine.append(worker_socket(sock, backlog, worker, other))
    except BaseException:
        for socks in by_worker.values():
            for s in socks:
                s.close()
        raise
    return Listeners(by_worker, first)


def shares_listeners(worker: Worker) -> bool:
    """Whether the workers of *worker*'s runtime serve one shared listening socket.

    With the GIL the workers take turns (the run permit), and spreading connections
    over them buys no CPU: the kernel's ``SO_REUSEPORT`` hashing would still hand a
    worker its share while it is busy, or blocked, and each turn between workers costs.
    So on a GIL build every worker serves a duplicate of the same socket, and the worker
    that bound it (the leader) accepts the connections while it takes them promptly;
    the others stand by, and accept only while its loop is stuck in a callback (see
    ``ParkingSelector.stand_by``). On a free-threaded build, where the workers run at
    once, each has a socket of its own with ``SO_REUSEPORT``, and the kernel spreads
    connections over them.
    """
    return worker.runtime.permit is not None


def worker_socket(sock: Any, backlog: int, leader: Worker, worker: Worker) -> socket.socket:
    """*worker*'s listening socket for the address of *leader*'s *sock*.

    A stand-by duplicate of *sock* where the workers share listeners (one accept queue
    for all, which *worker* serves only while *leader* is stuck), else a `twin`.
    """
    if not shares_listeners(leader):
        return twin(sock, backlog)
    new: socket.socket = sock.dup()
    new.setblocking(False)
    if worker.selector is not None:
        worker.selector.stand_by(new, functools.partial(leader.takes_connections, sock))
    return new


def twin(sock: Any, backlog: int) -> socket.socket:
    """A listening socket bound to the same address as *sock*, with ``SO_REUSEPORT``."""
    new = socket.socket(sock.family, sock.type, sock.proto)
    try:
        v6only = sock.family == socket.AF_INET6 and bool(
            sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        )
        _bind(new, sock.getsockname(), backlog, v6only=v6only)
    except BaseException:
        new.close()
        raise
    return new


def _bind(sock: socket.socket, addr: Any, backlog: int, *, v6only: bool) -> None:
    # Bind and listen as asyncio's create_server does, with SO_REUSEPORT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    try:
        sock.bind(addr)
    except OSError as exc:
        raise OSError(
            exc.errno, f"error while attempting to bind on address {addr!r}: {exc.strerror}"
        ) from None
    sock.listen(backlog)
    sock.setblocking(False)
