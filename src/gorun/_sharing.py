"""Sharing the run permit: with the GIL, busy workers run at once while their code leaves
the GIL free.

The run permit (``_permit``) makes busy workers take turns by loop iteration, which spares
Python code the cost of trading the GIL at every system call. Code that spends its time
in C without the GIL (hashing with ``hashlib``, compression, many NumPy calls) is the
exception: threads run it in parallel even with the GIL, and turns only keep the other
workers waiting. The monitor thread tells the two apart as a program runs, and the
permit is shared (`Permit.share`) while sharing pays:

* **Sharing.** While one worker runs with goroutines queued and the others are parked,
  the monitor looks at it now and then (``Sysmon.probe_at``: the worker's selects put
  other looks off). Waking up for a look, the monitor needs the GIL. If the worker's
  thread holds it (Python code), it gets it when the switch interval (5 ms by default)
  forces a hand-over, or at the worker's next select; if the thread runs C code without
  it, at once. A look counts for sharing if the monitor had the GIL within
  ``FREE_WAIT`` of its alarm, and the worker has not selected since the alarm went off
  (its select may have let the GIL go). ``CONFIRM`` such looks in a row share the
  permit and wake an idle worker, which takes half the queue (``steal_into``), as
  workers do without a permit. A worker blocked in a call also leaves the GIL free, but
  the look finds it stuck first (``find_stuck``) and takes its goroutines.
* **Taking turns again.** While the permit is shared, each look weighs what sharing
  buys: the CPU time the workers' threads used since the last weighing (at least
  ``WEIGH_EVERY`` before), over the time that passed. Two threads that run Python code
  share one GIL and use about one CPU between them; two that hash use two. Under
  ``MIN_GAIN`` at ``CONFIRM`` weighings in a row with two workers running, or once the
  monitor goes idle (nothing queued for a while), the workers take turns again from
  their next select.

A look at a worker that runs Python code takes the GIL from it once, in the middle of a
callback (its alarm's calls keep the GIL, see ``_alarm``, so that it is once): the first
comes ``PROBE_FIRST`` after the monitor woke, and looks that do not count for sharing
come further and further apart (``probe_gap``, doubled up to ``PROBE_MAX``), for the
runtime's lifetime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._permit import Permit, cpu_time

if TYPE_CHECKING:
    from ._worker import Worker

#: How soon after its alarm the monitor must have the GIL for a look to count for sharing:
#: a fifth of the default switch interval, which a thread running Python code holds it for.
FREE_WAIT = 1e-3
#: The CPU time per second of the workers' threads together under which sharing does not
#: pay (one thread computing uses 1.0; two that run Python code, about as much).
MIN_GAIN = 1.4
#: The shortest time over which the workers' CPU time is weighed while shared.
WEIGH_EVERY = 10e-3
#: Looks in a row that must agree before the permit is shared, or taken turns with again.
CONFIRM = 2
#: When the first look at the GIL comes, after the monitor woke for a queued goroutine;
#: the time from a look that did not count for sharing to the next (doubled each time, up
#: to PROBE_MAX); and from one that did to the next, which may confirm it. A look at a
#: worker running Python code costs it one hand-over of the GIL: a few tenths of a
#: millisecond of its time on a 2-vCPU machine (CPython 3.11), so looks 100 ms or more
#: apart cost it half a percent at most. Code that leaves the GIL free from the start is
#: seen sooner: the monitor's first look after a spawn woke it, a millisecond later,
#: counts too when it comes.
PROBE_FIRST = 100e-3
PROBE_MAX = 1.0
PROBE_MIN = 5e-3


class Sharing:
    """When to share the run permit (``_runtime.Runtime`` derives from it)."""

    # Declared here, set by Runtime.__init__.
    workers: list[Worker]
    permit: Permit | None
    wake_idle: Callable[[], None]

    def init_sharing(self) -> None:
        """Set the sharing state (from Runtime.__init__); touched by the monitor only."""
        self.probe_gap = PROBE_FIRST
        self._votes = 0  # looks in a row that called for a change
        # Each worker's thread's CPU time at the last weighing while shared, and when.
        self._cpu: dict[int, float] = {}
        self._cpu_at = 0.0

    def gil_probe(self, due: float, resumed: float, stuck: bool) -> float | None:
        """A look by the monitor, whose alarm went off at *due* and who had the GIL back at
        *resumed*, found goroutines queued (some *stuck*: it woke a thief). Returns how
        long until it may probe again (None: never, there is no permit to share)."""
        permit = self.permit
        if permit is None:
            return None
        if permit.shared:
            self._weigh(permit, resumed)
            return PROBE_MIN
        if stuck:
            self._votes = 0  # its thread blocks: that frees the GIL too
            return self.probe_gap
        busy: Worker | None = None
        for w in self.workers:
            if not w.parked or w.notified:
                if busy is not None:
                    return self.probe_gap  # two running: nothing for a look to decide
                busy = w
        # (A look that woke before due: a select moved the alarm on as it went off.)
        if (busy is not None and busy.runq and 0.0 <= resumed - due < FREE_WAIT
                and busy.last_select < due):
            self._votes += 1
            if self._votes >= CONFIRM:
                self._share(permit, resumed)
            self.probe_gap = PROBE_FIRST
            return PROBE_MIN
        self._votes = 0
        gap = self.probe_gap
        self.probe_gap = min(gap * 2, PROBE_MAX)
        return gap

    def end_sharing(self) -> None:
        """Nothing queued for a while (the monitor goes idle): take turns again."""
        permit = self.permit
        if permit is not None and permit.shared:
            permit.unshare()
        self._votes = 0

    def _share(self, permit: Permit, now: float) -> None:
        self._votes = 0
        self._cpu = self._cpu_times()
        self._cpu_at = now
        permit.share()
        self.wake_idle()  # a thief takes half the queue (Placement.steal_into)

    def _weigh(self, permit: Permit, now: float) -> None:
        # Shared: the workers' CPU time since the last weighing, per second that passed.
        last, last_at = self._cpu, self._cpu_at
        if now - last_at < WEIGH_EVERY:
            return  # (a thread's share of a millisecond says little)
        self._cpu, self._cpu_at = self._cpu_times(), now
        running = sum(1 for w in self.workers if not w.parked or w.notified)
        if running < 2:
            return  # one worker alone gains nothing and loses nothing by sharing
        used = sum(t - last[i] for i, t in self._cpu.items() if i in last)
        if used / (now - last_at) >= MIN_GAIN:
            self._votes = 0
            return
        self._votes += 1
        if self._votes >= CONFIRM:
            self._votes = 0
            self.probe_gap = min(self.probe_gap * 2, PROBE_MAX)
            permit.unshare()

    def _cpu_times(self) -> dict[int, float]:
        # Each worker's thread's CPU time, where its clock can be read.
        times = {}
        for w in self.workers:
            t = cpu_time(w)
            if t is not None:
                times[w.index] = t
        return times
