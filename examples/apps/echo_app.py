"""A plain asyncio TCP echo server and 50 concurrent clients; it does not import gorun.

It starts an echo server on 127.0.0.1 (a free port), connects 50 clients at once, has
each send a few lines and check that every line comes back, prints a summary, and exits
with status 0 if every echo matched.

Run it unchanged on gorun::

    python -m gorun examples/apps/echo_app.py
    python -m gorun --procs 4 examples/apps/echo_app.py

or on plain asyncio::

    python examples/apps/echo_app.py

It prints the class of the running event loop, which shows which one it ran on. Under
``python -m gorun`` every loop that ``asyncio.run`` creates is a ``gorun.Loop``; code that
never calls ``gorun.go()`` keeps running on that loop's home worker, as it would on a
plain asyncio loop.
"""

from __future__ import annotations

import asyncio
import sys

CLIENTS = 50
LINES = 5


class EchoServer:
    """Echoes every line back; counts the connections it has finished with."""

    def __init__(self) -> None:
        self.finished = 0
        self.all_finished = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        finally:
            self.finished += 1
            if self.finished == CLIENTS:
                self.all_finished.set()


async def client(port: int, n: int) -> int:
    """Send LINES lines, read each echo back; return how many matched."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    matched = 0
    try:
        for i in range(LINES):
            line = f"client {n} line {i}\n".encode()
            writer.write(line)
            await writer.drain()
            if await reader.readline() == line:
                matched += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return matched


async def main() -> int:
    loop = asyncio.get_running_loop()
    print(f"event loop: {type(loop).__module__}.{type(loop).__name__}")
    echo = EchoServer()
    server = await asyncio.start_server(echo.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = await asyncio.gather(*(client(port, n) for n in range(CLIENTS)))
        await asyncio.wait_for(echo.all_finished.wait(), timeout=10)
    matched = sum(results)
    expected = CLIENTS * LINES
    print(f"{CLIENTS} clients, {echo.finished} connections served")
    print(f"{matched}/{expected} lines echoed back intact")
    return 0 if matched == expected else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
