"""Goroutine placement and work stealing: the scheduling half of a runtime.

Placement (where a new goroutine waits to start):

* spawned on a worker's thread: that worker's ``runnext`` slot, so spawner and spawnee
  share a loop while the worker keeps up (see ``_worker``);
* spawned from a plain thread or a foreign event loop: the queue of a parked worker if
  there is one, else the next worker in turn.

Stealing: a worker whose loop has nothing ready (its selector is about to block) takes
half of another worker's ``runq``, oldest first, once the oldest entry has waited longer
than ``steal_grace``; a lone ``runnext`` only after ``runnext_grace``. The grace keeps a
pair spawned together on the spawner's loop when that loop gets to them promptly, and
still rescues goroutines queued behind a callback that blocks its loop. Only goroutines
that have not started move: an asyncio Task and its futures belong to one loop.

With the GIL, one more condition: the victim's loop must be stuck, that is, it has not
come back to its select for longer than ``stuck_after`` (a callback is blocking it, or
the GIL is held elsewhere). A loop that keeps iterating gets through its own queue as
fast as the GIL lets anyone, so taking goroutines from it adds no throughput; it only
splits goroutines that talk to each other over two threads, where each message costs a
cross-thread wake-up and a GIL hand-over instead of a same-loop hand-off. On a
free-threaded build a backlog alone is enough, since the thief runs in parallel.

At most one parked worker is woken at a time to look for work (``_nspinning``); a thief
that leaves work behind wakes the next one, so a fan-out spreads over every worker
without a storm of cross-thread wake-ups.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._permit import COMPUTE_LIMIT, Permit, computing
from ._wakeup import GIL_ENABLED

if TYPE_CHECKING:
    from ._goroutine import Goroutine
    from ._sysmon import Sysmon
    from ._worker import Startable, Worker

#: The error of a spawn into a runtime that is shutting down.
CLOSING = "cannot start a goroutine: its gorun runtime is shutting down"

#: How long a worker may hold back a wake-up before the monitor sends it.
DEFER_LIMIT = 1e-3


class Placement:
    """Placement and stealing (``_runtime.Runtime`` derives from it)."""

    # Declared here, set by Runtime.__init__.
    workers: list[Worker]
    lock: threading.Lock
    sysmon: Sysmon
    procs: int
    steal_grace: float
    runnext_grace: float
    stuck_after: float
    permit: Permit | None
    _closing: bool
    _nspinning: int
    _next_inject: int

    spawned: Callable[[], object]
    goroutine_exited: Callable[[], object]

    def spawn(self, g: Goroutine[Any], caller: Worker | None) -> None:
        """Queue *g* to start: beside its spawner if *caller* is one of ours, else injected.

        Raises:
            RuntimeError: the runtime is shutting down.
        """
        if self._closing:  # count_spawn(), inline: this runs per goroutine
            raise RuntimeError(CLOSING)
        self.spawned()
        if caller is not None and caller.runtime is self:
            caller.push_local(g)
            return
        workers = self.workers
        n = len(workers)
        with self.lock:
            start = self._next_inject
            self._next_inject = (start + 1) % n
        target = workers[start]
        for i in range(n):
            w = workers[(start + i) % n]
            if w.parked and not w.notified:
                target = w
                break
        for i in range(n):
            if workers[(target.index + i) % n].push_remote(g):
                return
        self.goroutine_exited()
        raise RuntimeError("cannot start a goroutine: every gorun worker has shut down")

    def wake_idle(self) -> None:
        """Wake one parked worker to look for work, unless one is already looking."""
        workers = self.workers
        n = len(workers)
        if n == 1 or self._nspinning or self._closing:
            return  # nobody else to wake, or somebody is looking already
        start = int(random.random() * n)  # randrange(n) costs ten times as much
        for i in range(n):
            w = workers[(start + i) % n]
            # A worker with goroutines queued is not idle, whatever its flag says: a
            # uvloop worker counts itself parked from a tick that found nothing to start
            # until its next, and may be stuck in a callback meanwhile, with its own
            # spawns queued (woken, it would take the token and never look).
            if w.parked and not w.notified and not w.runq and w.runnext is None:
                with self.lock:
                    if self._nspinning:
                        return
                    self._nspinning += 1
                    w.spinning = True
                if w.wake_to_steal():
                    return
                with self.lock:
                    # Not woken by us: it woke up on its own meanwhile, and may already
                    # have handed the token back in steal_into (do not count it twice).
                    if w.spinning:
                        w.spinning = False
                        self._nspinning -= 1

    def stop_spinning(self, thief: Worker) -> None:
        """*thief*, woken to look for work (see wake_idle), is awake: hand the token back."""
        with self.lock:
            if thief.spinning:
                thief.spinning = False
                self._nspinning -= 1

    def steal_into(self, thief: Worker) -> float | None:
        """Move goroutines from another worker's queue to *thief*'s.

        Returns 0.0 if something was stolen; else the delay after which a queued
        goroutine elsewhere becomes stealable, or None if there is nothing to wait for.
        """
        if thief.spinning:
            self.stop_spinning(thief)
        if self._closing:
            return None
        workers = self.workers
        n = len(workers)
        if n == 1:
            return None
        for victim in workers:  # the common case, an idle program: nothing queued anywhere
            if victim is not thief and (victim.runq or victim.runnext is not None):
                break
        else:
            return None
        now = time.perf_counter()
        retry: float | None = None
        start = int(random.random() * n)  # randrange(n) costs ten times as much
        for i in range(n):
            victim = workers[(start + i) % n]
            if victim is thief or not (victim.runq or victim.runnext is not None):
                continue
            if GIL_ENABLED and now - victim.last_select <= self.stuck_after:
                # With the GIL: its loop is running, not stuck in a callback, so leave
                # its goroutines to it (see the module docstring). The monitor wakes a
                # thief if it gets stuck.
                continue
            got, wait, left = self._take_half(victim, now)
            if not got:
                if wait is not None:
                    retry = wait if retry is None else min(retry, wait)
                continue
            for g in got:
                g._queued_at = now  # its new worker gets a grace period of its own
            with thief.lock:
                thief.runq.extend(got)
            thief.stolen += len(got)
            if left or len(got) > 1 or any(w.runq for w in workers):
                # Work is left queued somewhere (the thief's own queue included, which
                # it starts one at a time): wake the next idle worker to look, as Go's
                # spinning Ms do, so a fan-out reaches every worker.
                self.wake_idle()
            return 0.0
        return retry

    def _take_half(
        self, victim: Worker, now: float
    ) -> tuple[list[Startable], float | None, int]:
        # Under the victim's lock: half its runq (rounded up) once the head has waited
        # past the steal grace, or its lone runnext past the runnext grace. Returns what
        # was taken, how long until something becomes stealable (if nothing was taken
        # but something waits), and how many goroutines the victim has left queued.
        got: list[Startable] = []
        wait: float | None = None
        with victim.lock:
            runq = victim.runq
            if runq:
                wait = runq[0]._queued_at + self.steal_grace - now
                if wait <= 0:
                    for _ in range((len(runq) + 1) // 2):
                        got.append(runq.popleft())
            elif victim.runnext is not None:
                wait = victim.runnext._queued_at + self.runnext_grace - now
                if wait <= 0:
                    got.append(victim.runnext)
                    victim.runnext = None
            return got, wait, len(runq)

    def find_stuck(self) -> tuple[bool, bool]:
        """Wake an idle worker if a queued goroutine has waited past its grace.

        Returns whether any goroutine is queued at all (the monitor keeps watching), and
        whether one was stuck (an idle worker was asked to take it).
        """
        now = time.perf_counter()
        queued = stuck = False
        for w in self.workers:
            try:
                if w.runq:
                    queued = True
                    waited = now - w.runq[0]._queued_at > self.steal_grace
                elif w.runnext is not None:
                    queued = True
                    waited = now - w.runnext._queued_at > self.runnext_grace
                else:
                    continue
            except (IndexError, AttributeError, TypeError):  # emptied (or started) meanwhile
                queued = True
                continue
            if waited and self._stuck(w, now):
                stuck = True
        if stuck:
            self.wake_idle()
        return queued, stuck

    def _stuck(self, w: Worker, now: float) -> bool:
        # Whether a thief would help with w's queue: always on a free-threaded build;
        # with the GIL, if w's loop has not selected for stuck_after (it runs a long
        # callback, or blocks in one). With the run permit (w.permit: a uvloop worker
        # takes no part), only if its thread blocks, or has computed for COMPUTE_LIMIT:
        # a thief would only contend with it for the GIL, and take goroutines from a
        # loop that is merely busy starting them (one that spawns thousands at once).
        if not GIL_ENABLED:
            return True
        idle_for = now - w.last_select
        if idle_for <= self.stuck_after:
            return False
        if w.permit is None or w.permit.shared or idle_for > COMPUTE_LIMIT:
            return True
        return not computing(w, now)

    def send_deferred(self) -> bool:
        """Send the wake-ups a busy loop has held back too long (see Worker.defer_wake).

        Returns True if any worker holds wake-ups back (the monitor keeps watching).
        The owner sends them again at its next select, which costs the target one
        spurious wake-up at most.
        """
        now = time.perf_counter()
        held = False
        for w in self.workers:
            deferred = w.deferred
            if deferred:
                held = True
                if now - w.deferred_since > DEFER_LIMIT:
                    for target in list(deferred):
                        target.wake_now()
        return held

