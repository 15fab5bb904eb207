"""Timers and tickers: ``after``, ``Timer`` and ``Ticker``, delivering on channels.

Each timer owns a receive-only channel (a `_TimerChan`) that also holds the
timer's state, all guarded by the channel's ``_tlock`` (taken before the channel's own
lock, never after it):

* ``_when``: the deadline (``time.monotonic()``) while armed, else None;
* ``_period``: the ticker period, or None for a one-shot timer;
* ``_seq``: bumped by every ``stop`` / ``reset``, so that a callback scheduled before
  (possibly on another thread's loop, and possibly already running) does nothing;
* ``_handle`` / ``_loop``: the scheduled loop callback, for cancelling it early.

Scheduling: on the event loop running on the calling thread (``loop.call_later``), so a
timer made in a goroutine fires on that goroutine's worker; from a plain thread, on the
first worker of the current gorun runtime (the default runtime, started on first use),
by posting the ``call_later`` to that worker's thread. A timer whose loop stops before
the deadline never fires. The callback delivers without waiting, on the loop's thread:
a value goes to a parked receiver, else into the channel's one-value slot; a ticker
that finds the slot still full drops that tick, as Go's does.

Go 1.23 semantics: ``stop()`` and ``reset()`` take a value that fired but was not
received out of the slot (under ``_tlock``, which the delivering callback also holds),
so no receive that starts after they return can see a stale value.

Garbage: the scheduled callback holds only a weak reference to the channel, and the
``Timer`` / ``Ticker`` object only a strong one. A timer that nobody references any more
(neither the object nor its channel, nor a goroutine or select waiting on it) is freed,
and its pending callback is cancelled (when freed on its loop's thread) or does nothing
when it runs; a ticker is never rescheduled once freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, NoReturn, TypeAlias

from ._chan import Chan, WouldBlock
from ._config import check_seconds
from ._current import current_runtime, default_runtime
from ._thread_state import running_loop
from ._wakeup import call_in_loop

_RECV_ONLY = "a timer's channel is receive-only: only the timer sends on it; it never closes"

_Ref: TypeAlias = "weakref.ReferenceType[_TimerChan]"


class _TimerChan(Chan[float]):
    """The channel of a timer or ticker, and the timer itself (see the module docstring).

    Receive operations are those of [`Chan`][gorun.Chan]; the send operations and ``close``
    raise TypeError. It delivers ``time.monotonic()`` at the moment the timer fired.
    """

    __slots__ = ("_handle", "_loop", "_period", "_seq", "_tlock", "_when")

    def __init__(self) -> None:
        super().__init__(1)
        self._tlock = threading.Lock()
        self._seq = 0
        self._when: float | None = None
        self._period: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<Chan (timer, receive-only) len={len(self)} at {id(self):#x}>"

    def __del__(self) -> None:
        # Unreachable, so nobody else touches this state. Cancelling is only safe on
        # the handle's own loop thread; elsewhere the callback finds a dead weakref.
        handle = getattr(self, "_handle", None)
        with contextlib.suppress(Exception):  # e.g. at interpreter exit
            if handle is not None and running_loop() is self._loop:
                handle.cancel()

    # -- receive-only ---------------------------------------------------------------------

    def send(self, value: float, timeout: float | None = None) -> NoReturn:
        """Not allowed: raises TypeError."""
        raise TypeError(_RECV_ONLY)

    def send_nowait(self, value: float) -> NoReturn:
        """Not allowed: raises TypeError."""
        raise TypeError(_RECV_ONLY)

    def send_blocking(self, value: float, timeout: float | None = None) -> NoReturn:
        """Not allowed: raises TypeError."""
        raise TypeError(_RECV_ONLY)

    def close(self) -> NoReturn:
        """Not allowed: raises TypeError."""
        raise TypeError(_RECV_ONLY)

    # -- the timer ------------------------------------------------------------------------

    def _drain_locked(self) -> bool:
        try:
            Chan.recv_nowait(self)
        except WouldBlock:
            return False
        return True

    def _disarm_locked(self) -> tuple[bool, asyncio.TimerHandle | None, Any]:
        """Stop and drain; return (was active, handle to cancel, its loop)."""
        active = self._when is not None
        self._seq += 1
        self._when = None
        handle, loop = self._handle, self._loop
        self._handle = self._loop = None
        if self._drain_locked():
            active = True
        return active, handle, loop

    def _stop(self) -> bool:
        with self._tlock:
            active, handle, loop = self._disarm_locked()
        _cancel(handle, loop)
        return active

    def _reset(self, delay: float, period: float | None) -> bool:
        """Stop, drain, and arm to fire in *delay* seconds (then every *period*)."""
        loop = running_loop()
        with self._tlock:
            active, handle, old_loop = self._disarm_locked()
            self._period = period
            self._when = time.monotonic() + delay
            seq = self._seq
            if loop is not None:
                self._handle = loop.call_later(delay, _fire, weakref.ref(self), seq)
                self._loop = loop
        _cancel(handle, old_loop)
        if loop is None:
            rt = current_runtime() or default_runtime()
            if not rt.workers[0].post(_arm, weakref.ref(self), seq):
                with self._tlock:
                    if self._seq == seq:
                        self._when = None
                raise RuntimeError("cannot start a timer: the gorun runtime is shutting down")
        return active

    def _arm(self, ref: _Ref, seq: int) -> None:
        # On the loop's thread: schedule the callback armed by _reset from a plain thread.
        with self._tlock:
            if seq != self._seq or self._when is None:
                return
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._when - time.monotonic())
            self._handle = loop.call_later(delay, _fire, ref, seq)
            self._loop = loop

    def _fire(self, ref: _Ref, seq: int) -> None:
        # On the loop's thread, at the deadline: deliver without waiting, and re-arm a ticker.
        with self._tlock:
            if seq != self._seq or self._when is None:
                return
            now = time.monotonic()
            # A slow receiver has not taken the last tick yet: drop this one.
            with contextlib.suppress(WouldBlock):
                Chan.send_nowait(self, now)
            period = self._period
            if period is None:
                self._when = None
                self._handle = self._loop = None
                return
            when = self._when + period
            if when <= now:  # fell behind: skip the missed ticks, keep the phase
                when += period * ((now - when) // period + 1)
            self._when = when
            self._handle = asyncio.get_running_loop().call_later(when - now, _fire, ref, seq)

    def _describe(self) -> str:
        with self._tlock:
            when, pending = self._when, len(self) > 0
        parts = []
        if when is not None:
            parts.append(f"next in {max(0.0, when - time.monotonic()):.3f}s")
        if pending:
            parts.append("value waiting")
        return ", ".join(parts) or "inactive"


def _fire(ref: _Ref, seq: int) -> None:
    c = ref()
    if c is not None:
        c._fire(ref, seq)


def _arm(ref: _Ref, seq: int) -> None:
    c = ref()
    if c is not None:
        c._arm(ref, seq)


def _cancel(handle: asyncio.TimerHandle | None, loop: asyncio.AbstractEventLoop | None) -> None:
    # Cancel a superseded callback on its own loop's thread (it would do nothing anyway).
    if handle is None or loop is None:
        return
    if running_loop() is loop:
        handle.cancel()
    else:
        call_in_loop(loop, handle.cancel)


class _Timed:
    """The receive side shared by [`Timer`][gorun.Timer] and [`Ticker`][gorun.Ticker]."""

    __slots__ = ("__weakref__", "_c")

    _c: _TimerChan

    @property
    def c(self) -> Chan[float]:
        """The channel the values arrive on (receive-only), like Go's ``t.C``."""
        return self._c

    @property
    def chan(self) -> Chan[float]:
        """Another name for `c`."""
        return self._c

    @property
    def recv(self) -> Callable[[], Coroutine[Any, Any, float]]:
        """``t.c.recv``: ``await t.recv()`` waits for the next value; a ``select`` case."""
        return self._c.recv

    @property
    def recv_ok(self) -> Callable[[], Coroutine[Any, Any, tuple[float | None, bool]]]:
        """``t.c.recv_ok``; always ``(value, True)``, since the channel is never closed."""
        return self._c.recv_ok

    @property
    def recv_nowait(self) -> Callable[[], float]:
        """``t.c.recv_nowait``: the value if one is waiting, else WouldBlock."""
        return self._c.recv_nowait

    @property
    def recv_blocking(self) -> Callable[..., float]:
        """``t.c.recv_blocking(timeout=None)``: wait for the next value on a plain thread."""
        return self._c.recv_blocking

    def __aiter__(self) -> AsyncIterator[float]:
        """Iterate over the values as they arrive (for ever: the channel is never closed)."""
        return self._c.__aiter__()


class Timer(_Timed):
    """A one-shot timer: after *seconds*, it delivers the time on its channel, once.

    Like Go's ``time.Timer``. Receive with ``await timer.recv()``, ``async for`` or as a
    select case (``gorun.select(ch.recv, timer.recv)``); from a plain thread with
    ``timer.recv_blocking()``. The value is ``time.monotonic()`` at the moment it fired
    (Go sends a ``time.Time``; this is the same clock asyncio uses).

    The channel behaves as an unbuffered one (Go 1.23): once `stop()` or
    `reset()` returns, no receive gets a value from before that call, even one that
    had already fired. The timer runs on the event loop of the thread that created (or
    last reset) it, or, from a plain thread, on a worker of the gorun runtime. A timer
    that nothing refers to any more is garbage-collected even if never stopped.

    Args:
        seconds: The delay, 0 or more (an int or float).

    Raises:
        TypeError: *seconds* is not a number.
        ValueError: *seconds* is negative or not finite.
    """

    __slots__ = ()

    def __init__(self, seconds: float) -> None:
        delay = check_seconds(seconds, "Timer seconds")
        self._c = _TimerChan()
        self._c._reset(delay, None)

    def __repr__(self) -> str:
        return f"<Timer {self._c._describe()} at {id(self):#x}>"

    def stop(self) -> bool:
        """Stop the timer: it will not deliver (any more).

        Returns:
            True if this call stopped an active timer: one that had not fired, or had
            fired but whose value nobody had received yet (that value is discarded).
            False if it had already delivered its value or had been stopped.
        """
        return self._c._stop()

    def reset(self, seconds: float) -> bool:
        """Re-arm the timer to fire *seconds* from now, discarding any undelivered value.

        Returns:
            True if the timer was active (as for `stop()`), False if it had already
            delivered its value or had been stopped.

        Raises:
            TypeError: *seconds* is not a number.
            ValueError: *seconds* is negative or not finite. The timer is unchanged.
        """
        delay = check_seconds(seconds, "Timer.reset() seconds")
        return self._c._reset(delay, None)


class Ticker(_Timed):
    """A ticker: it delivers the time on its channel every *period* seconds, until stopped.

    Like Go's ``time.Ticker``: receive with ``await ticker.recv()``, ``async for`` or as
    a select case. The value is ``time.monotonic()`` when the tick fired. The channel
    holds at most one tick: a slow receiver misses ticks rather than getting a backlog,
    and the ticker keeps its phase (the next tick stays on the period grid). Call
    `stop()` when done; a ticker that nothing refers to any more is still
    garbage-collected (and stops ticking). Once `stop()` or `reset()` returns,
    no receive gets a tick from before that call (Go 1.23).

    It runs on the event loop of the thread that created (or last reset) it, or, from a
    plain thread, on a worker of the gorun runtime.

    Args:
        period: Seconds between ticks, more than 0.

    Raises:
        TypeError: *period* is not a number.
        ValueError: *period* is not more than 0, or not finite.
    """

    __slots__ = ()

    def __init__(self, period: float) -> None:
        seconds = check_seconds(period, "Ticker period", positive=True)
        self._c = _TimerChan()
        self._c._reset(seconds, seconds)

    def __repr__(self) -> str:
        return f"<Ticker period={self._c._period}s {self._c._describe()} at {id(self):#x}>"

    def stop(self) -> None:
        """Stop ticking; a tick that fired but was not received is discarded."""
        self._c._stop()

    def reset(self, period: float) -> None:
        """Tick every *period* seconds from now on, discarding a tick not yet received.

        Raises:
            TypeError: *period* is not a number.
            ValueError: *period* is not more than 0, or not finite. The ticker is
                unchanged.
        """
        seconds = check_seconds(period, "Ticker.reset() period", positive=True)
        self._c._reset(seconds, seconds)


def after(seconds: float) -> Chan[float]:
    """A channel that delivers the time once, *seconds* from now: Go's ``time.After``.

    The value is ``time.monotonic()`` at the moment the timer fired. The channel is
    receive-only and is never closed. The usual timeout::

        index, value = await gorun.select(ch.recv, gorun.after(1.0).recv)
        if index == 1:
            ...  # nothing arrived on ch within a second

    Nothing needs stopping: once the channel is unreferenced, the timer is collected.
    Use [`Timer`][gorun.Timer] to stop or reset it.

    Args:
        seconds: The delay, 0 or more.

    Raises:
        TypeError: *seconds* is not a number.
        ValueError: *seconds* is negative or not finite.
    """
    delay = check_seconds(seconds, "after() seconds")
    c = _TimerChan()
    c._reset(delay, None)
    return c
