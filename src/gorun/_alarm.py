"""An alarm one thread sleeps on without the GIL, and another moves without waking it.

The monitor thread (``_sysmon``) sleeps on one. A busy worker that is the only one
running pushes its time back while it shows, by selecting, that nothing it holds is
stuck: with the GIL, every time the monitor wakes it must take the GIL from that worker
in the middle of a callback, and so a look it does not need still costs the worker a
hand-over. A ``threading.Condition`` cannot be moved like that: whoever moves its
timeout must wake the sleeper, which then wants the GIL.

On Linux the alarm is a ``timerfd``. With the GIL, its calls are the C library's
through ``ctypes.PyDLL``, which keeps the GIL during them (they take a microsecond): a
call that let it go would let the monitor, if its alarm just went off, take it from the
worker in the middle of a callback. Without the GIL, ``os.timerfd_create`` from Python
3.13, and the C library's through ``ctypes`` before. `new_alarm` returns None where
there is none; the monitor then sleeps on its condition, and nothing moves its looks.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable

_perf_counter = time.perf_counter
_GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


class Alarm:
    """A one-shot alarm on the monotonic clock, waited on with ``poll``.

    `arm` may be called from any thread, while another waits: it replaces the time
    (the kernel's ``timerfd_settime``), and a waiter sleeps on to the new one.
    """

    __slots__ = ("_fd", "_poll", "_set", "_take")

    def __init__(self, fd: int, set_fn: Callable[[int, float], None],
                 take_fn: Callable[[int], bool] | None = None) -> None:
        self._fd = fd
        self._set = set_fn
        self._take = take_fn or _os_take
        # poll, not select.select, which cannot wait on a descriptor numbered 1024 or
        # more (a runtime started in a process with many connections open).
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def fileno(self) -> int:
        """The timer's file descriptor (readable once the alarm has gone off)."""
        return self._fd

    def arm(self, seconds: float) -> None:
        """Go off *seconds* from now (at least a nanosecond), replacing any earlier time."""
        self._set(self._fd, max(seconds, 1e-9))

    def take(self) -> bool:
        """Whether the alarm went off since it was last armed (and clear that)."""
        return self._take(self._fd)

    def wait(self) -> float:
        """Sleep (without the GIL) until the alarm goes off, at its latest time.

        Returns when this thread had the GIL back after the wake-up (``perf_counter``):
        with the GIL, a thread that runs Python code keeps it until the interpreter's
        switch interval forces a hand-over, so how late that is tells whether another
        thread held it (see ``_sharing``).
        """
        # Armed again after it went off and before take(): the expiry was cleared by
        # the new time, so sleep on to that one.
        while True:
            self._poll.poll()
            resumed = _perf_counter()
            if self.take():
                return resumed

    def __del__(self) -> None:
        # Closed only when nothing refers to it: a worker may still arm it after the
        # monitor has stopped.
        if self._fd >= 0:
            os.close(self._fd)


def _os_take(fd: int) -> bool:
    try:
        os.read(fd, 8)
    except BlockingIOError:
        return False
    return True


def _os_alarm() -> Alarm | None:
    # Python 3.13+: the os module has timerfd (read with getattr: the type checker
    # checks this code as 3.11's).
    create = getattr(os, "timerfd_create", None)
    if create is None:
        return None
    flags = os.O_NONBLOCK | os.O_CLOEXEC  # TFD_NONBLOCK, TFD_CLOEXEC
    fd: int = create(time.CLOCK_MONOTONIC, flags=flags)
    settime = os.timerfd_settime  # type: ignore[attr-defined,unused-ignore]

    def set_fn(fd: int, seconds: float) -> None:
        settime(fd, initial=seconds)

    return Alarm(fd, set_fn)


def _ctypes_alarm(hold_gil: bool = False) -> Alarm | None:
    # The C library's timerfd_create and timerfd_settime (Linux, glibc or musl), for
    # Python before 3.13, and with *hold_gil* on any version: then its calls, and the
    # read that takes the alarm, keep the GIL (ctypes.PyDLL), where ctypes and os let it
    # go around every call. With the GIL, each release is a chance for a thread that
    # waits for it (the monitor, woken by this alarm) to take it from the thread that
    # runs Python code, and each such hand-over costs that thread tens of microseconds
    # or more; these calls take a microsecond. Imported here, as ctypes takes
    # milliseconds to import.
    try:
        import ctypes

        dll = ctypes.PyDLL if hold_gil else ctypes.CDLL
        libc = dll(None, use_errno=True)
        create = libc.timerfd_create
        settime = libc.timerfd_settime
        read = libc.read
    except (ImportError, OSError, AttributeError):
        return None

    class Timespec(ctypes.Structure):
        _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

    class Itimerspec(ctypes.Structure):
        _fields_ = (("it_interval", Timespec), ("it_value", Timespec))

    create.argtypes = (ctypes.c_int, ctypes.c_int)
    create.restype = ctypes.c_int
    settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.POINTER(Itimerspec), ctypes.c_void_p)
    settime.restype = ctypes.c_int
    read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    read.restype = ctypes.c_ssize_t
    # linux/timerfd.h: TFD_NONBLOCK and TFD_CLOEXEC are O_NONBLOCK and O_CLOEXEC.
    fd = create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None

    def set_fn(fd: int, seconds: float) -> None:
        # A spec of its own per call: threads may arm the alarm at the same time.
        spec = Itimerspec()
        sec = int(seconds)
        spec.it_value.tv_sec = sec
        spec.it_value.tv_nsec = int((seconds - sec) * 1e9)
        if settime(fd, 0, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    if not hold_gil:
        return Alarm(fd, set_fn)

    def take_fn(fd: int) -> bool:
        # The expiration count (8 bytes), if it went off; -1 (EAGAIN) if not.
        return bool(read(fd, ctypes.create_string_buffer(8), 8) == 8)

    return Alarm(fd, set_fn, take_fn)


def new_alarm() -> Alarm | None:
    """A new alarm, not armed; None where the platform has no timerfd.

    With the GIL, one whose calls keep it (see `_ctypes_alarm`); without, os's from
    3.13.
    """
    try:
        if _GIL_ENABLED:
            return _ctypes_alarm(hold_gil=True) or _os_alarm() or _ctypes_alarm()
        return _os_alarm() or _ctypes_alarm()
    except OSError:
        return None
