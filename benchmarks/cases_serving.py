"""Serving HTTP on one loop and on every worker, loaded by ``wrk``.

A minimal HTTP/1.1 keep-alive server (asyncio streams, no framework) answers every
request after a fixed amount of pure-Python work, so that the server's CPU, not the
network, is what runs out. It runs in a process of its own, in one of these shapes:

* ``asyncio``: ``asyncio.start_server`` on one stock loop (the baseline);
* ``gorun-1``: ``gorun.start_server`` under ``gorun.run(procs=1)``;
* ``gorun-N``: ``gorun.start_server`` under ``gorun.run(procs=N)``: a listener on every
  worker (``SO_REUSEPORT``).

``wrk`` (Debian's package ``wrk``) loads it for a few seconds from another process and
reports requests per second and the 99th percentile latency. Where ``wrk`` is missing
the case is left out, with a message saying how to get it.

    python -m benchmarks.cases_serving serve KIND PROCS PORT   (the server; prints "ready")
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from typing import Any

from ._harness import Goal, Metric, MetricCase, Sample, Target, gil_enabled

#: Pure-Python work per request: a sum of this many squares (about 40 us on 3.11).
WORK = 2_000
#: wrk's connections and threads, and seconds of load per measurement.
CONNECTIONS = 64
THREADS = 2
DURATION, QUICK_DURATION = 4, 1

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b"


def work() -> bytes:
    """The fixed Python work of one request, and its body."""
    return str(sum(i * i for i in range(WORK))).encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer HTTP/1.1 GET requests on one keep-alive connection."""
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")  # wrk sends GETs without a body
            body = work()
            writer.write(_RESPONSE % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(kind: str, port: int) -> None:
    if kind == "asyncio":
        server: Any = await asyncio.start_server(handle, "127.0.0.1", port, reuse_port=True)
    else:
        import gorun

        server = await gorun.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def serve_main(kind: str, procs: int, port: int) -> None:
    """The server process: serve until killed."""
    if kind == "asyncio":
        asyncio.run(_serve(kind, port))
    else:
        import gorun

        gorun.run(_serve(kind, port), procs=procs)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LATENCY = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_SCALE = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_wrk(text: str) -> tuple[float, float]:
    """Requests per second and the 99th percentile latency (seconds) from wrk's output."""
    rate, latency = _RATE.search(text), _LATENCY.search(text)
    if rate is None or latency is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return float(rate.group(1)), float(latency.group(1)) * _SCALE[latency.group(2)]


def measure(kind: str, procs: int, quick: bool) -> Sample:
    """Start the server, load it with wrk, stop it: seconds per request, p99 latency."""
    port = _free_port()
    cmd = [sys.executable, "-m", "benchmarks.cases_serving", "serve", kind, str(procs), str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {kind} server did not start")
        duration = QUICK_DURATION if quick else DURATION
        out = subprocess.run(
            ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency",
             f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=duration + 30, check=True,
        ).stdout
    finally:
        server.kill()  # a measured server needs no graceful shutdown
        server.wait()
    rate, p99 = parse_wrk(out)
    return {"per_request": 1.0 / rate, "p99": p99}


def wrk_available() -> bool:
    """Whether wrk is on PATH; if not, say how to get it."""
    if shutil.which("wrk"):
        return True
    print("serving: left out, wrk is not installed (Debian/Ubuntu: apt-get install wrk)",
          file=sys.stderr)
    return False


def cases(procs: int) -> list[MetricCase]:
    """One loop against gorun on one worker and on every worker."""
    if not wrk_available():
        return []
    base, one, every = "asyncio, one loop", "gorun procs=1", f"gorun procs={procs}, every worker"
    peers = {
        base: lambda quick: measure("asyncio", 1, quick),
        one: lambda quick: measure("gorun", 1, quick),
        every: lambda quick: measure("gorun", procs, quick),
    }
    targets: list[Goal]
    if gil_enabled():
        note = "GIL build: every-worker serving keeps at least 0.95x one loop's requests/s"
        targets = [Target(every, base, 1 / 0.95, note=note)]
    else:
        note = f"free-threaded: procs={procs} serves at least 1.6x one loop's requests/s"
        targets = [Target(every, base, 1 / 1.6, note=note)] if procs >= 2 else []
    return [
        MetricCase(
            name="serving-http",
            description=f"HTTP keep-alive, {WORK}-square sum per request, wrk -t{THREADS} "
            f"-c{CONNECTIONS}, server in its own process",
            baseline=base,
            peers=peers,
            measures=[
                Metric("per_request", "per request (1 / requests/s)", "us", 1e6),
                Metric("p99", "p99 latency", "ms", 1e3),
            ],
            targets=targets,
            max_rounds=3,
        )
    ]


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 5:
        sys.exit("usage: python -m benchmarks.cases_serving serve KIND PROCS PORT")
    serve_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
