"""The run permit: with the GIL, busy workers take turns by loop iteration, not by system call.

With the GIL, two busy workers cannot run Python code at once, but each releases the GIL
at every system call its loop makes (every ``recv``, ``send`` and ``epoll_wait``), and a
thread waiting for the GIL takes it then. Two busy event loops therefore trade the GIL
several times per request, each time with a context switch and a wait for the thread
that lost it (the "convoy effect"): a server on two loops serves less than on one.

The permit makes them take turns by loop iteration instead: a stdlib worker on a GIL
build holds it while its loop runs callbacks, and lets it go when it selects with
nothing to do, or, busy, when another worker waits for it. A worker that waits for the
permit waits on a `Turn` of its own, not for the GIL, so the holder's system calls no
longer hand the GIL over. Its turn comes at the holder's next select: fairly, in order.

Isolation stays, as Go's ``sysmon`` takes the processor of a thread stuck in a system
call: a worker waiting for the permit looks at the holder's thread every ``PROBE``, and
takes the permit if that thread is blocked (a callback in ``time.sleep`` or a blocking
call: it used less than ``BLOCKED`` of the CPU since the wait began), or if the holder
has not come back to its select within ``SLICE`` (a callback that computes for long,
which then shares the GIL as any thread does). Each look needs the GIL, which a busy
holder then gives up at its next system call: looks every 0.5 ms cost a two-loop server
a tenth of its throughput, hence 2 ms. Workers of a free-threaded build, and uvloop
workers (no selector to hook), have no permit.

State, guarded by ``Permit.lock``: ``holder`` is the worker whose loop runs (None: none
does); ``waiters`` are the workers that wait for it, in order, each on its own
``turn``, which the one that hands it over gives; ``since`` is when the holder
last showed it is not stuck (it got the permit, or selected). A worker counts as
holding it only while ``holder is self``: one that lost it to a thief finds that out at
its next select and waits its turn. While ``shared`` (see ``_sharing``: the busy
workers' code leaves the GIL free, so they run at once) nobody holds it, nobody waits,
and ``acquire`` returns at once; once unshared, the next worker to select takes it.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections import deque
from typing import Protocol

#: How long a holder may go without selecting before a waiting worker takes the permit;
#: None: the interpreter's switch interval (``sys.setswitchinterval``), read at each use,
#: the slice it gives a thread that wants the GIL.
SLICE: float | None = None


def time_slice() -> float:
    """SLICE, in seconds."""
    return sys.getswitchinterval() if SLICE is None else SLICE

#: How often a waiting worker looks whether the holder's thread is blocked (in a
#: system call, ``time.sleep``...) rather than running, and the share of the CPU time
#: below which it counts as blocked: a worker blocked in a slow call gives the permit up
#: within about PROBE, one that computes keeps it for up to SLICE.
PROBE = 2e-3
BLOCKED = 0.1
#: How long a loop whose thread computes may go without selecting and still count as
#: busy rather than stuck (what asyncio's debug mode calls a slow callback): until then
#: an idle worker would only contend with it for the GIL, so it neither steals its
#: queued goroutines nor accepts the connections left to it (see _placement, _parking).
#: A loop whose thread blocks counts as stuck much sooner.
COMPUTE_LIMIT = 0.1

_perf_counter = time.perf_counter
_getcpuclockid = getattr(time, "pthread_getcpuclockid", None)


def _thread_clock() -> int | None:
    # The CPU-time clock of the calling thread, where the platform has one.
    if _getcpuclockid is None:
        return None
    try:
        return int(_getcpuclockid(threading.get_ident()))
    except OSError:
        return None


def cpu_time(holder: Holder | None) -> float | None:
    """CPU seconds the holder's thread has used; None where that cannot be read (a
    thread that has ended, no per-thread clock)."""
    clock = None if holder is None else holder.cpu_clock
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:
        return None


class Turn:
    """A worker's turn: given (the permit handed to it) from any thread, taken by it.

    An eventfd (a pipe where there is none) waited on with ``poll``, not a lock: tools
    that flag blocking calls made from a running event loop (blockbuster) count a lock
    acquire that waits as a bug, and this wait is deliberate. Its file descriptors are
    closed when the worker that owns it is collected: no thread can give it a turn then.
    """

    __slots__ = ("_poll", "_r", "_w")

    def __init__(self) -> None:
        self._r = self._w = -1
        if hasattr(os, "eventfd"):
            self._r = self._w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - platforms without eventfd
            self._r, self._w = os.pipe()
            os.set_blocking(self._r, False)
            os.set_blocking(self._w, False)
        # poll, not select.select: a descriptor numbered 1024 or more (a process with
        # many connections open) is out of select's range.
        self._poll = select.poll()
        self._poll.register(self._r, select.POLLIN)

    def give(self) -> None:
        """Hand the turn over (any thread)."""
        if self._r == self._w:
            os.eventfd_write(self._w, 1)
        else:  # pragma: no cover - platforms without eventfd
            os.write(self._w, b"\0")

    def take(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for the turn; True if it was given (and taken)."""
        if timeout > 0:
            self._poll.poll(timeout * 1e3)
        return self.take_now()

    def take_now(self) -> bool:
        """Take the turn if it was given, without waiting."""
        try:
            if self._r == self._w:
                os.eventfd_read(self._r)
            else:  # pragma: no cover - platforms without eventfd
                os.read(self._r, 1)
        except BlockingIOError:
            return False
        return True

    def __del__(self) -> None:
        for fd in {self._r, self._w} - {-1}:
            os.close(fd)


#: (when, CPU time of a thread): one look at it.
Sample = tuple[float, float]


class Holder(Protocol):
    """What holds a permit: a worker, with the turn it waits on."""

    #: Given to hand this worker the permit.
    turn: Turn
    #: Its thread's CPU-time clock (set at its first acquire), None where none.
    cpu_clock: int | None
    #: Its thread at the monitor's last look (see computing).
    cpu_sample: Sample | None


def look(
    holder: Holder, last: Sample | None, now: float, within: float = float("inf")
) -> tuple[Sample | None, bool | None]:
    """Look at *holder*'s thread: (this look's sample, whether it ran since *last*).

    A sample is (when, CPU time of the thread); None where the clock cannot be read.
    "Ran" means the thread used at least BLOCKED of the CPU time since *last*, rather
    than blocked (in a system call, ``time.sleep``...); None where that cannot be told:
    no earlier sample, one older than *within*, or no clock.
    """
    cpu = cpu_time(holder)
    sample = None if cpu is None else (now, cpu)
    if cpu is None or last is None or not 0 < now - last[0] <= within:
        return sample, None
    return sample, cpu - last[1] >= BLOCKED * (now - last[0])


def computing(holder: Holder, now: float) -> bool:
    """Whether *holder*'s thread ran (rather than blocked) since the last look at it.

    For the monitor thread, which looks every millisecond or more while goroutines are
    queued (see `look`). The first look, and a thread whose clock cannot be read, count
    as running.
    """
    holder.cpu_sample, ran = look(holder, holder.cpu_sample, now)
    return ran is not False


class Permit:
    """The run permit of one runtime's workers (see the module docstring)."""

    __slots__ = ("holder", "lock", "shared", "since", "waiters")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: Holder | None = None
        self.since = 0.0
        self.waiters: deque[Holder] = deque()
        self.shared = False  # written under lock, read without it as a hint

    def acquire(self, me: Holder) -> None:
        """Hold the permit: at once if free or its holder is stuck, else at its turn.

        While it is shared, return at once without holding it.
        """
        if me.cpu_clock is None:
            me.cpu_clock = _thread_clock()
        lock = self.lock
        while True:
            if self.shared:
                return
            lock.acquire()
            try:
                if self.shared:
                    return
                now = _perf_counter()
                holder = self.holder
                if holder is None or holder is me or now - self.since > time_slice():
                    self.holder = me  # free, ours, or its holder is stuck: take it
                    self.since = now
                    return
                self.waiters.append(me)
            finally:
                lock.release()
            try:
                if self._wait_turn(me, holder, now):
                    return
            except BaseException:
                self._leave_line(me)
                raise
            # Handed over, then taken by a thief before this thread ran: again.

    def _wait_turn(self, me: Holder, holder: Holder, start: float) -> bool:
        # Wait in line (me is in waiters) until handed the permit, or until the holder
        # is found stuck: blocked (its thread used less than BLOCKED of the CPU time
        # since this wait began: time.sleep, a blocking call) at a look every PROBE, or
        # computing for SLICE without a select. True once held.
        cpu0 = cpu_time(holder)
        lock = self.lock
        while True:
            wait = min(PROBE, max(self.since + time_slice() - _perf_counter(), 0.0))
            if me.turn.take(wait):
                return self.holder is me  # handed over (since was set)
            lock.acquire()
            try:
                if me not in self.waiters:  # handed over as the wait ended
                    me.turn.take_now()
                    return self.holder is me
                now = _perf_counter()
                if self.holder is not holder:  # a thief took it: watch the new holder
                    holder, start = self.holder, now  # type: ignore[assignment]
                    cpu0 = cpu_time(holder)
                    continue
                cpu = cpu_time(holder)
                blocked = cpu is not None and cpu0 is not None and (
                    cpu - cpu0 < BLOCKED * (now - start)
                )
                if blocked or now - self.since > time_slice():
                    self.waiters.remove(me)
                    self.holder = me
                    self.since = now
                    return True
            finally:
                lock.release()

    def share(self) -> None:
        """Let every worker run at once: nobody holds the permit, and the workers that
        waited for it run on (each finds it shared when its turn is given)."""
        with self.lock:
            self.shared = True
            self.holder = None
            waiters = list(self.waiters)
            self.waiters.clear()
        for w in waiters:
            w.turn.give()

    def unshare(self) -> None:
        """Take turns again: the next worker to select takes the permit, and the others
        wait for it at their own next select."""
        with self.lock:
            self.shared = False
            self.since = _perf_counter()

    def _leave_line(self, me: Holder) -> None:
        # The wait ended in an error: leave the line, or give back what was handed over.
        with self.lock:
            if me in self.waiters:
                self.waiters.remove(me)
                return
            me.turn.take_now()
        self.release(me)

    def release(self, me: Holder) -> None:
        """Let the permit go, to the first waiter if any; nothing if *me* lost it."""
        lock = self.lock
        lock.acquire()
        try:
            if self.holder is not me:
                return
            if self.waiters:
                nxt = self.waiters.popleft()
                self.holder = nxt
                self.since = _perf_counter()
                nxt.turn.give()
            else:
                self.holder = None
        finally:
            lock.release()

    def pass_turn(self, me: Holder) -> None:
        """At a busy select: hand the permit to a waiting worker, and wait for it back."""
        self.release(me)
        self.acquire(me)
