"""The monitor thread (``gorun-sysmon``), which rescues goroutines queued behind a stuck loop.

It only looks and wakes: the runtime decides what is stuck (``Runtime.find_stuck``) and
sends wake-ups held back too long (``Runtime.send_deferred``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._runtime import Runtime

#: The monitor's polling period while goroutines are queued, and its back-off limit.
SYSMON_MIN = 1e-3
SYSMON_MAX = 10e-3
#: With nothing queued for this long, the monitor sleeps until a goroutine is queued.
SYSMON_IDLE_AFTER = 50e-3


class Sysmon:
    """A monitor thread that rescues goroutines queued behind a busy or blocked loop.

    A goroutine waits in its spawner's queue until that loop yields. If the loop instead
    runs a long callback, or blocks in one (``time.sleep``, a blocking client), no idle
    worker hears of it: idle workers park and steal only when woken. Like Go's
    ``sysmon``, this thread looks at the queues every millisecond or so while anything
    is queued, and wakes an idle worker when a goroutine has waited past its grace.
    With nothing queued it backs off, then sleeps until the next goroutine is queued,
    so an idle program costs nothing.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cond = threading.Condition(threading.Lock())
        self.idle = True  # sleeping until poked; guarded by cond, read as a hint
        # When its current sleep ends and it wants the GIL back (inf: not before it is
        # poked). A busy worker that sees this time pass lets it have the GIL
        # (Wakeups.yield_to_sysmon); written without a lock, read as a hint.
        self.due = float("inf")
        self._stopping = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name="gorun-sysmon", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()

    def poke(self) -> None:
        """A goroutine was queued: make sure the monitor is watching."""
        if self.idle and self.thread is not None:
            with self.cond:
                if self.idle:
                    self.idle = False
                    self.cond.notify()

    def _main(self) -> None:
        delay = SYSMON_MIN
        quiet = 0.0
        while True:
            with self.cond:
                if self._stopping:
                    return
                if self.idle:
                    self.due = float("inf")
                    self.cond.wait()
                    delay, quiet = SYSMON_MIN, 0.0
                else:
                    self.due = time.perf_counter() + delay
                    self.cond.wait(delay)
                self.due = float("inf")  # running: it has the GIL
                if self._stopping:
                    return
            held = self.runtime.send_deferred()
            queued, stuck = self.runtime.find_stuck()
            if stuck:
                delay, quiet = SYSMON_MIN, 0.0
                continue
            if queued:
                # Goroutines wait, but their loops get to them: keep watching, less
                # and less often. Each look takes the GIL from a busy worker, which
                # costs it a hand-over (tens of microseconds) every time.
                delay, quiet = min(delay * 2, SYSMON_MAX), 0.0
                continue
            if held:
                # Held-back wake-ups are normally sent within microseconds: keep an
                # eye on them, at the slowest rate.
                delay, quiet = SYSMON_MAX, 0.0
                continue
            quiet += delay
            delay = min(delay * 2, SYSMON_MAX)
            if quiet >= SYSMON_IDLE_AFTER:
                with self.cond:
                    self.idle = True
                # A goroutine queued after the scan above, by a thread that still saw
                # idle False, did not poke: look once more now that idle is set.
                if self.runtime.find_stuck()[0] or self.runtime.send_deferred():
                    with self.cond:
                        self.idle = False
                    delay, quiet = SYSMON_MIN, 0.0
