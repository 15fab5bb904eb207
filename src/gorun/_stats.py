"""Snapshots of the runtime's counters, as returned by [`gorun.stats()`][gorun.stats]."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerStats:
    """Counters of one worker loop at the time of the snapshot.

    Attributes:
        index: The worker's position in the runtime (0 is the home loop of a
            [`gorun.Loop`][gorun.Loop]).
        thread_id: ``threading.get_ident()`` of the thread that runs the loop, or
            ``None`` if the loop has not run yet.
        goroutines: Goroutines started on this worker and still alive.
        started: Goroutines this worker has started since it was created.
        stolen: Goroutines this worker took from other workers' queues.
        queued: Goroutines waiting in this worker's queues, not started yet.
        wakeups: Cross-thread wake-ups sent to this worker (to a parked selector loop;
            to a uvloop worker, once per drain of its queues).
        loop: The worker's loop kind, ``"asyncio"`` or ``"uvloop"``.
    """

    index: int
    thread_id: int | None
    goroutines: int
    started: int
    stolen: int
    queued: int
    wakeups: int
    loop: str


@dataclass(frozen=True)
class Stats:
    """A snapshot of one runtime.

    Attributes:
        procs: The number of worker loops.
        goroutines: Live goroutines: started and not finished, or queued.
        workers: One [`WorkerStats`][gorun.WorkerStats] per worker, in index order.
    """

    procs: int
    goroutines: int
    workers: tuple[WorkerStats, ...]
