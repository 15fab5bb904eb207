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

from ._harness import Goal, Metric, MetricCase, Sample, Sampler, Target, gil_enabled

#: Pure-Python work per request: a sum of this many squares (about 40 us on 3.11).
WORK = 2_000
#: wrk's connections and threads, and seconds of load per measurement.
CONNECTIONS = 64
THREADS = 2
DURATION, QUICK_DURATION = 4, 1
#: Rounds of a serving case, fewer than the suite's: each takes seconds per peer. Runs of
#: one server vary by several percent (a shared 2-vCPU machine, wrk on it too), so a
#: median needs more than three.
ROUNDS = 5

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b"


#: What every serving case reports: the first is the one ratios compare.
_MEASURES = [
    Metric("per_request", "per request (1 / requests/s)", "us", 1e6),
    Metric("p99", "p99 latency", "ms", 1e3),
]


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
    return measure_command(cmd, port, quick)


def measure_command(cmd: list[str], port: int, quick: bool) -> Sample:
    """Run the server *cmd*, wait until *port* accepts, load it with wrk, stop it."""
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_serving(server, port)
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


def _wait_until_serving(server: subprocess.Popen[str], port: int, timeout: float = 30) -> None:
    # Poll the port: uvicorn and aiohttp say nothing at their quiet log levels.
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            err = server.stderr.read() if server.stderr is not None else ""
            raise RuntimeError(f"the server {server.args!r} exited:\n{err}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server {server.args!r} did not start") from None
            time.sleep(0.05)


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
            measures=_MEASURES,
            targets=targets,
            max_rounds=ROUNDS,
        )
    ]


def framework_cases(procs: int) -> list[MetricCase]:
    """Unmodified uvicorn and aiohttp apps: on stock asyncio, and on gorun by command line.

    uvicorn is also run on every worker of *procs* (``gorun.listen``), shown beside them.
    """
    if not wrk_available():
        return []
    try:
        import aiohttp  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"serving-uvicorn, serving-aiohttp: left out, {exc.name} is not installed "
              "(pip install -e '.[bench]')", file=sys.stderr)
        return []
    py = sys.executable
    uvicorn_cmd = [py, "-m", "uvicorn", "benchmarks.serving_apps:starlette_app",
                   "--log-level", "warning", "--no-access-log", "--http", "h11", "--port"]

    def uvicorn_on(loop: str) -> Sampler:
        def sample(quick: bool) -> Sample:
            port = _free_port()
            return measure_command([*uvicorn_cmd, str(port), "--loop", loop], port, quick)

        return sample

    def aiohttp_on(prefix: list[str]) -> Sampler:
        def sample(quick: bool) -> Sample:
            port = _free_port()
            cmd = [*prefix, "-m", "benchmarks.serving_apps", "aiohttp", str(port)]
            return measure_command(cmd, port, quick)

        return sample

    def case(name: str, what: str, base: str, ours: str, peers: dict[str, Sampler]) -> MetricCase:
        return MetricCase(
            name=name,
            description=f"{what}, {WORK}-square sum per request, wrk -t{THREADS} "
            f"-c{CONNECTIONS}, unmodified app",
            baseline=base,
            peers=peers,
            measures=_MEASURES,
            targets=[
                Target(ours, base, 1.0, note="requests/s at least stock asyncio's"),
                Target(ours, base, 1.0, metric="p99", note="p99 at most stock asyncio's"),
            ],
            max_rounds=ROUNDS,
        )

    def uvicorn_every_worker(quick: bool) -> Sample:
        port = _free_port()
        cmd = [py, "-m", "benchmarks.serving_apps", "uvicorn-every-worker", str(port),
               str(procs)]
        return measure_command(cmd, port, quick)

    u_base, u_ours = "uvicorn --loop asyncio", "uvicorn --loop gorun:new_event_loop"
    u_every = f"uvicorn on every worker (gorun.listen), procs={procs}"
    a_base, a_ours = "python app.py (aiohttp)", "python -m gorun app.py (aiohttp)"
    return [
        case("serving-uvicorn", "Starlette under uvicorn (h11)", u_base, u_ours,
             {u_base: uvicorn_on("asyncio"), u_ours: uvicorn_on("gorun:new_event_loop"),
              u_every: uvicorn_every_worker}),
        case("serving-aiohttp", "aiohttp web.run_app", a_base, a_ours,
             {a_base: aiohttp_on([py]), a_ours: aiohttp_on([py, "-m", "gorun"])}),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 5:
        sys.exit("usage: python -m benchmarks.cases_serving serve KIND PROCS PORT")
    serve_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
