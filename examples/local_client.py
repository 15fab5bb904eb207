"""Keep a goroutine on its spawner's loop with ``go(..., local=True)``.

Many asyncio objects belong to the event loop they were created on: a connection's
``StreamReader``/``StreamWriter`` (and the transport under them), an ``asyncio.Queue``
or ``Lock`` once it has waited, a future, a client session. Code running on another loop
must not use them: awaiting one of their futures from another loop raises
``RuntimeError`` (``... attached to a different loop``), and calling a transport from
another thread is not thread-safe at all.

A goroutine started with plain ``gorun.go()`` may run on any worker loop: it waits in a
queue until a worker starts it, and an idle worker may take it. ``go(..., local=True)``
starts it at once on the caller's own loop, and a started goroutine never moves, so it
can use the caller's loop-bound objects.

This program opens one connection to a small server in ``main`` and hands the connection
and an ``asyncio.Queue`` (both bound to ``main``'s loop) to a *local* goroutine that owns
them. The CPU work runs in ordinary goroutines, anywhere; their results come back to
``main`` through their handles, which work across loops, and ``main`` feeds the queue.

Run it from the repository root::

    python examples/local_client.py
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading

import gorun

JOBS = 20


async def serve(
    served: asyncio.Event, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A tiny server: answers each line with the line upper-cased."""
    try:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    finally:
        served.set()


async def digest(n: int) -> tuple[int, str, int]:
    """CPU work for an ordinary goroutine: it may run on any worker."""
    data = str(n).encode() * 20_000
    for _ in range(20):
        data = hashlib.sha256(data).digest() * 1000
    return n, hashlib.sha256(data).hexdigest()[:16], threading.get_ident()


async def sender(
    queue: asyncio.Queue[str | None],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> tuple[int, int]:
    """Owns the connection: sends each queued line and reads the reply.

    Started with local=True, so it runs on the loop that created *queue*, *reader* and
    *writer*. Returns (replies received, the thread it ran on).
    """
    replies = 0
    while (line := await queue.get()) is not None:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        reply = await reader.readline()
        assert reply.decode().rstrip("\n") == line.upper()
        replies += 1
    writer.close()
    await writer.wait_closed()
    return replies, threading.get_ident()


async def main() -> None:
    served = asyncio.Event()
    server = await asyncio.start_server(functools.partial(serve, served), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        # Both bound to this loop (worker 0, the home loop of gorun.run).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        conn = gorun.go(sender(queue, reader, writer), name="sender", local=True)
        jobs = [gorun.go(digest(n), name=f"digest-{n}") for n in range(JOBS)]

        threads = set()
        for job in jobs:
            n, hexdigest, thread_id = await job  # a handle is awaitable from any loop
            threads.add(thread_id)
            queue.put_nowait(f"job {n}: {hexdigest}")
        queue.put_nowait(None)
        replies, sender_thread = await conn
        await served.wait()  # let the server side finish with the connection too

    home = threading.get_ident()
    print(f"{JOBS} digests computed on {len(threads)} thread(s); {replies} replies received")
    print(f"sender ran on the home loop's thread: {sender_thread == home}")


if __name__ == "__main__":
    gorun.run(main(), procs=2)
