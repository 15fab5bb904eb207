"""How serving on every worker scales with the worker count, on a machine with many CPUs.

Runs the ``serving-http`` server (``benchmarks.cases_serving``) as one asyncio loop, then
as gorun on every worker at each worker count asked for, and loads each with ``wrk``.
The server is pinned to as many CPUs as it has workers and ``wrk`` to the CPUs left
(all of them, where none are left), so that the load generator does not take the
server's CPUs while there are others. Prints requests per second, p99 latency and the
speed-up over one asyncio loop; ``--json`` writes them too.

    python -m benchmarks.scaling --procs 1,2,4,8,16 --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from .cases_serving import _free_port, parse_wrk


def measure(kind: str, procs: int, duration: int, connections: int) -> dict[str, Any]:
    """Serve with *procs* workers on *procs* CPUs, load with wrk on the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = cpus[:procs]
    wrk_cpus = cpus[procs:] or cpus
    port = _free_port()
    cmd = [sys.executable, "-m", "benchmarks.cases_serving", "serve", kind, str(procs),
           str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: os.sched_setaffinity(0, server_cpus))
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {kind} server did not start")
        threads = max(1, min(len(wrk_cpus), 8))
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
             f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=duration + 30, check=True,
            preexec_fn=lambda: os.sched_setaffinity(0, wrk_cpus),
        ).stdout
    finally:
        server.kill()
        server.wait()
    rate, p99 = parse_wrk(out)
    return {"kind": kind, "procs": procs, "rps": rate, "p99_ms": p99 * 1e3,
            "server_cpus": len(server_cpus), "wrk_cpus": len(wrk_cpus), "wrk_threads": threads}


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", default="1,2,4,8,16", help="worker counts, comma-separated")
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per point")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    counts = [int(p) for p in args.procs.split(",")]
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"Python {sys.version.split()[0]} ({'GIL' if gil else 'free-threaded'}), "
          f"{len(os.sched_getaffinity(0))} CPUs, wrk -c{args.connections} "
          f"-d{args.duration}s", flush=True)
    base = measure("asyncio", 1, args.duration, args.connections)
    rows = [base]
    print(f"{'server':24s} {'req/s':>10s} {'p99 ms':>8s} {'vs one loop':>12s}", flush=True)
    print(f"{'asyncio, one loop':24s} {base['rps']:10,.0f} {base['p99_ms']:8.1f} "
          f"{1.0:11.2f}x", flush=True)
    for n in counts:
        t0 = time.perf_counter()
        row = measure("gorun", n, args.duration, args.connections)
        rows.append(row)
        print(f"{f'gorun procs={n}':24s} {row['rps']:10,.0f} {row['p99_ms']:8.1f} "
              f"{row['rps'] / base['rps']:11.2f}x   ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "gil": gil, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
