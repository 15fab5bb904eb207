"""How workers wake each other, and how they share the GIL once woken.

Waking a parked stdlib worker writes a byte to its loop's self-pipe; a uvloop worker gets
``call_soon_threadsafe(tick)``, since uvloop exposes no selector to park in.

On a GIL build a woken worker must also get the GIL before it runs, and a busy loop
gives the GIL up only inside its own ``select(0)`` calls and takes it straight back, so
the woken thread can starve (CPython resets its forced switch request every time the GIL
changes hands). Three manners, between stdlib workers on a GIL build only:

* **Deferred wake-ups**: a worker that posts to a parked worker from its loop writes the
  wake-up at its own next select, just before it gives up the GIL (`defer_wake`), not at
  once: woken earlier, the target would only wait for the GIL this thread holds.
* **Hand-over**: before its next busy select, a worker that woke others waits, with the
  GIL released, until each has come back to its own select (`hand_over_gil`).
* **Sharing**: a worker busy for ``SHARE_EVERY`` while another worker is awake naps
  briefly so that the other gets the GIL (`share_gil`); so it does, at most once per
  ``SYSMON_YIELD``, when the monitor thread's sleep is over (`yield_to_sysmon`).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._thread_state import current_worker, running_loop

if TYPE_CHECKING:
    import asyncio

    from ._permit import Permit
    from ._runtime import Runtime

#: The longest a worker waits for workers it woke to get the GIL (see hand_over_gil).
SETTLE_TIMEOUT = 2e-3
#: How often it looks whether they have come back, napping in between.
SETTLE_POLL = 50e-6
#: How many selects in a row a worker waits for one it woke (see hand_over_gil).
SETTLE_TRIES = 5
#: A worker busy this long with another worker awake lets it have the GIL (share_gil).
SHARE_EVERY = 5e-3
#: How long it sleeps to do so.
SHARE_FOR = 50e-6
#: A busy worker lets the monitor thread have the GIL at most this often.
SYSMON_YIELD = 1e-3
#: False on a free-threaded build, where a woken thread needs no hand-over.
GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()

perf_counter = time.perf_counter
_select_nap = select.select


def nap(seconds: float) -> None:
    """Sleep with the GIL released.

    Not time.sleep() nor a timed lock acquire: tools that flag blocking calls made from a
    running event loop (blockbuster) treat those as bugs, and these naps are deliberate.
    """
    _select_nap([], [], [], seconds)


def _noop() -> None:
    pass


class Wakeups:
    """The waking half of a worker (``_worker.Worker`` derives from it)."""

    # Declared here, set by Worker.__init__ and Worker.attach.
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    index: int
    parks_in_selector: bool
    parked: bool
    notified: bool
    closed: bool
    thread_id: int | None
    selects: int
    permit: Permit | None
    tick: Callable[[], None]

    def init_wakeups(self, runtime: Runtime) -> None:
        """Set the waking state (from Worker.__init__)."""
        # Workers this one woke that may still be waiting for the GIL (see hand_over_gil):
        # (worker, its selects counter when woken, tries so far).
        self.woken: list[tuple[Wakeups, int, int]] = []
        # Workers this one must wake at its next select (see defer_wake).
        self.deferred: list[Wakeups] = []
        self.deferred_since = 0.0
        self.defers_wakes = False  # set by Worker.attach for stdlib loops on a GIL build
        self.busy_since = 0.0
        # Whether busy selects must share the GIL.
        self.shares_gil = GIL_ENABLED and runtime.procs > 1
        self.sysmon = runtime.sysmon
        self.wake_fn: Callable[[], object] = _noop

    def wake_now(self) -> None:
        """Write this worker's wake-up now (any thread)."""
        try:  # noqa: SIM105 - contextlib.suppress costs three Python calls more
            self.wake_fn()
        except OSError:
            # The loop is closed (nothing left to wake), or its self-pipe is full: then
            # it is readable already, and the loop's select returns anyway.
            pass

    def wake_by_callback(self) -> None:
        """The wake-up of a uvloop worker: run its tick (any thread)."""
        with contextlib.suppress(RuntimeError):  # closed under us: nothing left to wake
            self.loop.call_soon_threadsafe(self.tick)

    def defer_wake(self, target: Wakeups) -> None:
        """Wake *target* when this worker's loop next selects, not now (own thread).

        With the GIL, a worker woken now would only wait for the GIL, which this thread
        holds until its loop selects: it would wake twice (from its selector, then from
        the GIL wait) where once will do, and the second wake costs as much as the
        first. Deferred to the select, the wake-up lands when the GIL is about to be
        free. A callback that runs on for long after posting would hold the wake-up
        back; the monitor thread sends any that waited past DEFER_LIMIT.
        """
        if not self.deferred:
            self.deferred_since = perf_counter()
            sysmon = self.sysmon
            if sysmon.idle:
                sysmon.poke()
        self.deferred.append(target)

    def flush_wakes(self) -> None:
        """Write the deferred wake-ups, remembering them for the hand-over (own thread).

        At a busy select and when the loop stops. A worker about to park sends them in
        ``Parking.select_idle``, without remembering them: its select gives up the GIL.
        """
        deferred = self.deferred
        self.deferred = []
        for w in deferred:
            w.wake_now()
            self.remember_woken(w)

    def remember_woken(self, woken: Wakeups) -> None:
        """Record that this worker woke *woken*, for the hand-over (own thread)."""
        if (GIL_ENABLED and woken.parks_in_selector and self.parks_in_selector
                and woken is not self and self.permit is None):
            self.woken.append((woken, woken.selects, 0))

    def hand_over_gil(self) -> None:
        """Wait, GIL released, until the workers this one woke have run (own thread).

        A worker that does not show up within SETTLE_TIMEOUT in all (its thread not
        scheduled yet, on a loaded machine) stays owed, for a few more tries at the next
        selects.
        """
        woken = self.woken
        self.woken = []
        deadline = perf_counter() + SETTLE_TIMEOUT
        for i, (w, seq, _tries) in enumerate(woken):
            while w.selects == seq and not w.closed:
                if perf_counter() >= deadline:
                    self.woken = [
                        (w2, seq2, tries2 + 1)
                        for w2, seq2, tries2 in woken[i:]
                        if tries2 < SETTLE_TRIES and w2.selects == seq2
                    ]
                    return
                nap(SETTLE_POLL)

    def share_gil(self, now: float) -> None:
        """Busy for SHARE_EVERY: if another worker is awake, nap so that it gets the GIL.

        A worker that stays busy drops the GIL only for select(0) and takes it straight
        back, so other busy workers (and those just woken) may wait far longer than the
        interpreter's switch interval.
        """
        self.busy_since = now
        for w in self.runtime.workers:
            awake = not w.parked or w.notified  # running, or woken and not running yet
            if w is not self and awake and w.thread_id is not None and not w.closed:
                nap(SHARE_FOR)
                self.busy_since = perf_counter()
                return

    def yield_to_sysmon(self) -> None:
        """The monitor thread's sleep is over: nap once so that it gets the GIL now.

        Each release of the GIL by a busy loop wakes the monitor, which finds the GIL
        taken again and goes back to wait: a futile context switch per loop iteration
        until the switch interval forces a hand-over. Another busy worker may take the
        GIL instead; the monitor's time is then pushed back, so that this loop naps at
        most once per SYSMON_YIELD.
        """
        self.sysmon.due = perf_counter() + SYSMON_YIELD
        nap(SHARE_FOR)


def note_woken(woken: Wakeups) -> None:
    """Record that this thread's worker, if any, woke *woken* (see hand_over_gil)."""
    if GIL_ENABLED and woken.parks_in_selector:
        me = current_worker()
        if me is not None:
            me.remember_woken(woken)


def call_in_loop(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> bool:
    """Run ``fn(*args)`` on *loop*'s thread soon, from any thread; False if it is closed.

    A gorun worker gets a coalesced post; any other loop gets ``call_soon_threadsafe``
    (or ``call_soon`` when it is the loop running here).
    """
    worker: Any = getattr(loop, "_gorun_worker", None)
    if worker is not None and worker.loop is loop:
        return worker.post(fn, *args)  # type: ignore[no-any-return]
    try:
        if running_loop() is loop:
            loop.call_soon(fn, *args)
        else:
            loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # closed
        return False
    return True
