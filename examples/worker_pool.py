"""A worker pool: K goroutines take jobs from one channel and send results to another.

::

    feed --jobs--> worker x K --results--> main

``feed`` sends the jobs on ``jobs`` and closes it. K ``worker`` goroutines, started with
``WaitGroup.go`` and so spread over the worker loops, loop with ``async for job in
jobs``: each job goes to exactly one of them, and the loops end once ``jobs`` is closed
and drained. The workers send their results on ``results``; since several goroutines
send on it, none of them closes it: a goroutine waits on the ``WaitGroup`` and closes
``results`` when every worker has finished, which ends ``main``'s receive loop.

The jobs stand for requests to slow servers (an ``asyncio.sleep``), and one of them
never gets an answer. ``main`` therefore receives with a ``select`` on ``results`` and a
timer channel (``gorun.after``): when no result has come for ``IDLE_TIMEOUT`` seconds, it
stops waiting, reports the jobs that never finished, and cancels the workers. The stuck
worker ends, the ``WaitGroup`` reaches zero, and ``results`` is closed as usual.

Run it from the repository root::

    python examples/worker_pool.py     # one worker loop per CPU, or $GORUN_PROCS

The results and the job that times out are the same on every run; which worker ran
which job, on which thread, and the timings depend on scheduling.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from dataclasses import dataclass, field

import gorun

WORKERS = 4  # K
JOBS = 12
STUCK = 7  # this job's server never answers
IDLE_TIMEOUT = 0.5  # seconds without a result before main gives up


@dataclass(frozen=True)
class Job:
    id: int
    payload: bytes
    latency: float  # how long the "server" takes to answer


@dataclass(frozen=True)
class Result:
    job_id: int
    size: int
    crc: int
    worker: int


@dataclass
class WorkerStats:
    worker: int
    thread: str = "-"  # set when the worker starts
    jobs: list[int] = field(default_factory=list)


def make_jobs() -> list[Job]:
    return [
        Job(
            id=i,
            payload=f"job-{i}:".encode() * (i + 1),
            latency=3600.0 if i == STUCK else 0.01 + (i * 7 % 5) * 0.01,
        )
        for i in range(JOBS)
    ]


async def handle(job: Job) -> tuple[int, int]:
    """Pretend to send the payload to a server and wait for its answer."""
    await asyncio.sleep(job.latency)
    return len(job.payload), zlib.crc32(job.payload)


async def worker(stats: WorkerStats, jobs: gorun.Chan[Job], results: gorun.Chan[Result]) -> None:
    stats.thread = threading.current_thread().name
    async for job in jobs:  # ends once jobs is closed and drained
        stats.jobs.append(job.id)
        size, crc = await handle(job)
        await results.send(Result(job.id, size, crc, stats.worker))


async def feed(jobs: gorun.Chan[Job], todo: list[Job]) -> None:
    for job in todo:
        await jobs.send(job)
    jobs.close()  # the sender closes: the workers' loops end after the last job


async def close_when_done(wg: gorun.WaitGroup, results: gorun.Chan[Result]) -> None:
    await wg.wait()
    results.close()  # every sender has finished


async def main() -> None:
    start = time.perf_counter()
    todo = make_jobs()
    jobs: gorun.Chan[Job] = gorun.Chan(WORKERS)
    results: gorun.Chan[Result] = gorun.Chan(WORKERS)

    wg = gorun.WaitGroup()
    stats = [WorkerStats(k) for k in range(WORKERS)]
    workers = [wg.go(worker(s, jobs, results), name=f"worker-{s.worker}") for s in stats]
    gorun.go(feed(jobs, todo), name="feed")
    closer = gorun.go(close_when_done(wg, results), name="close-results")
    print(f"{gorun.procs()} worker loops, {WORKERS} pool workers, {len(todo)} jobs")

    collected: list[Result] = []
    pending = {job.id for job in todo}
    while True:
        # A fresh timer for each receive: an idle timeout, not a deadline for all.
        case, value = await gorun.select(results.recv_ok, gorun.after(IDLE_TIMEOUT).recv)
        if case == 1:
            print(f"no result for {IDLE_TIMEOUT} s; giving up on job(s) {sorted(pending)}")
            for g in workers:
                g.cancel()  # the stuck worker ends; the others have finished already
            break
        result, ok = value
        if not ok:
            break  # results is closed and drained: every worker has finished
        collected.append(result)
        pending.discard(result.job_id)
    # Once every worker has ended, cancelled or not, the WaitGroup reaches zero and
    # results is closed: take whatever is left (nothing, unless a result raced the timer).
    async for result in results:
        collected.append(result)
    await closer

    print("results:")
    for r in sorted(collected, key=lambda r: r.job_id):
        print(f"  job {r.job_id:2d}: {r.size:3d} bytes, crc32 {r.crc:08x}")
    print("per worker (depends on scheduling):")
    for s in stats:
        print(f"  worker {s.worker} on {s.thread:16} jobs {s.jobs}")
    cancelled = sum(g.cancelled() for g in workers)
    print(f"workers cancelled: {cancelled}; goroutines left: {gorun.num_goroutine()}")
    print(f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    gorun.run(main())
