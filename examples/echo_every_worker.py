"""An echo server that accepts on every worker loop, and a local client to try it.

``gorun.start_server`` opens a listener on every worker, on the same port, and each
connection is served by the worker that accepted it: its reader, writer and handler stay
on that loop. On free-threaded CPython each worker has a socket of its own
(``SO_REUSEPORT``) and the kernel spreads connections over them; with the GIL they share
one socket, and the caller's loop takes the connections while it can (with the GIL the
workers take turns anyway), the others only while it is stuck. The
client opens 40 connections at once, sends a few lines on each, checks that every reply
is its own, and prints how many connections each worker served.

Run it from the repository root::

    python examples/echo_every_worker.py            # one worker per CPU, or $GORUN_PROCS
    python examples/echo_every_worker.py --serve    # serve on port 8888 until Ctrl-C
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter

import gorun

CONNECTIONS = 40
LINES = 5


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo each line back, prefixed with the worker thread that serves the connection."""
    worker = threading.current_thread().name
    try:
        while line := await reader.readline():
            writer.write(worker.encode() + b" " + line)
            await writer.drain()
    finally:
        writer.close()


async def client(port: int, n: int) -> str:
    """One connection: send LINES lines, check the replies; return the serving worker."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    workers = set()
    try:
        for i in range(LINES):
            writer.write(f"client {n} line {i}\n".encode())
            await writer.drain()
            worker, text = (await reader.readline()).decode().split(" ", 1)
            if text != f"client {n} line {i}\n":
                raise AssertionError(f"client {n} got someone else's reply: {text!r}")
            workers.add(worker)
    finally:
        writer.close()
        await writer.wait_closed()
    (worker,) = workers  # a connection stays on one worker
    return worker


async def demo() -> None:
    async with await gorun.start_server(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"serving on port {port} with {server.listeners} listeners "
              f"({gorun.procs()} workers)")
        served = Counter(await asyncio.gather(*(client(port, n) for n in range(CONNECTIONS))))
        for worker, count in sorted(served.items()):
            print(f"  {worker:>12}: {count} connections")
        print(f"{sum(served.values())} connections, every reply its own")


async def serve() -> None:
    server = await gorun.start_server(echo, "127.0.0.1", 8888)
    print(f"serving on 127.0.0.1:8888 on {server.listeners} listeners; Ctrl-C stops")
    await server.serve_forever()


if __name__ == "__main__":
    gorun.run(serve() if "--serve" in sys.argv[1:] else demo())
