"""Timers: after(), Timer and Ticker, on channels, with Go 1.23 semantics.

Behaviour only: durations are short and nothing asserts how long anything took. A timer
made in a goroutine fires on that goroutine's own loop, which cannot run the timer's
callback while the goroutine runs, so "stop before it fires" needs no luck: nothing
fires between two statements that do not await.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import gorun
from gorun import _time

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")

TICK = 0.01
WAIT = 5.0  # only a bound for blocking calls, never an expectation


def run(main: Coroutine[Any, Any, T], procs: int = 2) -> T:
    return gorun.run(main, procs=procs)


async def nothing_ready(ch: gorun.Chan[Any]) -> bool:
    index, _ = await gorun.select(ch.recv, default=True)
    return index == -1


# -- after() --------------------------------------------------------------------------------


def test_after_delivers_the_time_once() -> None:
    async def main() -> None:
        start = time.monotonic()
        ch = gorun.after(TICK)
        value = await ch.recv()
        assert isinstance(value, float)
        assert start <= value <= time.monotonic()
        assert await nothing_ready(ch)
        await gorun.after(5 * TICK).recv()
        assert await nothing_ready(ch)  # still nothing: it delivers once

    run(main())


def test_after_zero_fires() -> None:
    async def main() -> float:
        return await gorun.after(0).recv()

    assert isinstance(run(main()), float)


def test_timeout_idiom_picks_the_timer_when_the_channel_stays_empty() -> None:
    async def main() -> tuple[int, Any]:
        ch: gorun.Chan[int] = gorun.Chan()
        return await gorun.select(ch.recv, gorun.after(TICK).recv)

    index, value = run(main())
    assert index == 1
    assert isinstance(value, float)


def test_timeout_idiom_picks_the_channel_when_it_has_a_value() -> None:
    async def main() -> tuple[int, Any]:
        ch: gorun.Chan[int] = gorun.Chan(1)
        ch.send_nowait(7)
        return await gorun.select(ch.recv, gorun.after(TICK).recv)

    assert run(main()) == (0, 7)


def test_timeout_idiom_picks_a_value_sent_later_by_another_goroutine() -> None:
    async def main() -> tuple[int, Any]:
        ch: gorun.Chan[int] = gorun.Chan()

        async def sender() -> None:
            await ch.send(3)

        gorun.go(sender())
        return await gorun.select(ch.recv, gorun.after(WAIT).recv)

    assert run(main(), procs=4) == (0, 3)


def test_after_channel_is_receive_only() -> None:
    async def main() -> None:
        ch = gorun.after(TICK)
        with pytest.raises(TypeError, match="receive-only"):
            ch.send_nowait(1.0)
        with pytest.raises(TypeError, match="receive-only"):
            ch.close()
        with pytest.raises(TypeError, match="receive-only"):
            _ = ch.send(1.0)  # raises at once: there is no coroutine to await
        with pytest.raises(TypeError, match="select"):
            await gorun.select((ch.send, 1.0))
        assert isinstance(await ch.recv(), float)

    run(main())


def test_after_from_a_plain_thread() -> None:
    start = time.monotonic()
    value = gorun.after(TICK).recv_blocking(timeout=WAIT)
    assert start <= value <= time.monotonic()


def test_after_from_a_foreign_asyncio_loop() -> None:
    import asyncio

    async def main() -> tuple[int, Any]:
        ch: gorun.Chan[int] = gorun.Chan()
        return await gorun.select(ch.recv, gorun.after(TICK).recv)

    index, _ = asyncio.run(main())
    assert index == 1


# -- Timer ----------------------------------------------------------------------------------


def test_timer_fires_once() -> None:
    async def main() -> None:
        t = gorun.Timer(TICK)
        assert isinstance(await t.recv(), float)
        assert await nothing_ready(t.c)
        assert t.stop() is False  # already delivered

    run(main())


def test_timer_stopped_before_it_fires_never_delivers() -> None:
    async def main() -> None:
        t = gorun.Timer(TICK)
        assert t.stop() is True
        assert t.stop() is False
        await gorun.after(5 * TICK).recv()
        assert await nothing_ready(t.c)

    run(main())


def test_timer_stopped_after_firing_but_before_recv_leaves_no_stale_value() -> None:
    async def main() -> None:
        t = gorun.Timer(TICK)
        # Same loop, earlier deadline: t has fired by the time this delivers.
        await gorun.after(5 * TICK).recv()
        assert t.stop() is True  # Go 1.23: the undelivered value counted as active
        assert await nothing_ready(t.c)
        await gorun.after(2 * TICK).recv()
        assert await nothing_ready(t.c)

    run(main())


def test_timer_reset_rearms() -> None:
    async def main() -> None:
        t = gorun.Timer(WAIT * 10)
        assert t.reset(TICK) is True
        first = await t.recv()
        assert t.reset(TICK) is False  # fired and received: inactive
        second = await t.recv()
        assert first < second

    run(main())


def test_timer_reset_after_firing_discards_the_stale_value() -> None:
    async def main() -> None:
        t = gorun.Timer(TICK)
        await gorun.after(5 * TICK).recv()  # t has fired; its value waits
        before_reset = time.monotonic()
        assert t.reset(TICK) is True
        value = await t.recv()
        assert value >= before_reset  # from the new firing, not the stale one

    run(main())


def test_timer_reset_after_stop_fires_again() -> None:
    async def main() -> None:
        t = gorun.Timer(TICK)
        assert t.stop() is True
        assert t.reset(TICK) is False
        assert isinstance(await t.recv(), float)

    run(main())


def test_timer_select_and_async_for() -> None:
    async def main() -> None:
        ch: gorun.Chan[int] = gorun.Chan()
        timer = gorun.Timer(TICK)
        ticker = gorun.Ticker(WAIT * 10)
        try:
            index, value = await gorun.select(ch.recv, timer.recv, ticker.recv)
            assert index == 1
            assert isinstance(value, float)
            timer.reset(TICK)
            index, pair = await gorun.select(ch.recv, timer.recv_ok, ticker.recv_ok)
            assert index == 1
            assert pair[1] is True
            timer.reset(TICK)
            async for v in timer:
                assert isinstance(v, float)
                break
        finally:
            ticker.stop()

    run(main())


def test_timer_from_a_plain_thread() -> None:
    t = gorun.Timer(TICK)
    assert isinstance(t.recv_blocking(timeout=WAIT), float)
    assert t.stop() is False
    t2 = gorun.Timer(WAIT * 10)
    assert t2.stop() is True
    with pytest.raises(gorun.WouldBlock):
        t2.recv_nowait()


def test_timer_created_on_one_worker_received_on_others() -> None:
    async def receive(t: gorun.Timer) -> tuple[int, float]:
        return threading.get_ident(), await t.recv()

    async def main() -> list[tuple[int, float]]:
        timers = [gorun.Timer(TICK) for _ in range(8)]
        gs = [gorun.go(receive(t)) for t in timers]
        return [await g for g in gs]

    results = run(main(), procs=4)
    assert len(results) == 8
    assert all(isinstance(v, float) for _, v in results)


def test_stop_racing_the_firing_from_another_thread() -> None:
    # stop() is True exactly when the receiver never gets the timer's value.
    async def receiver(t: gorun.Timer, quit: gorun.Chan[None]) -> int:
        index, _ = await gorun.select(t.recv, quit.recv_ok)
        return index

    for i in range(100):
        t = gorun.Timer(0)  # armed on a worker of the default runtime
        quit: gorun.Chan[None] = gorun.Chan()
        g = gorun.go(receiver(t, quit))
        for _ in range(i % 10 * 50):
            pass
        stopped = t.stop()
        quit.close()
        index = g.wait(timeout=WAIT)
        assert index == (1 if stopped else 0), (i, stopped, index)


# -- Ticker ---------------------------------------------------------------------------------


def test_ticker_ticks_until_stopped() -> None:
    async def main() -> list[float]:
        ticker = gorun.Ticker(TICK)
        ticks: list[float] = []
        async for value in ticker:
            ticks.append(value)
            if len(ticks) == 3:
                break
        ticker.stop()
        await gorun.after(5 * TICK).recv()
        assert await nothing_ready(ticker.c)
        return ticks

    ticks = run(main())
    assert len(ticks) == 3
    assert ticks == sorted(ticks)
    assert len(set(ticks)) == 3


def test_ticker_keeps_at_most_one_tick_for_a_slow_receiver() -> None:
    async def main() -> None:
        ticker = gorun.Ticker(TICK)
        await gorun.after(10 * TICK).recv()  # several periods pass unreceived
        ticker.recv_nowait()
        assert await nothing_ready(ticker.c)  # the rest were dropped, not queued
        assert isinstance(await ticker.recv(), float)  # and it still ticks
        ticker.stop()

    run(main())


def test_ticker_reset() -> None:
    async def main() -> None:
        ticker = gorun.Ticker(WAIT * 10)
        ticker.reset(TICK)
        first = await ticker.recv()
        second = await ticker.recv()
        assert first < second
        await gorun.after(5 * TICK).recv()  # a tick waits now
        ticker.reset(WAIT * 10)
        assert await nothing_ready(ticker.c)  # reset discarded it
        ticker.stop()

    run(main())


def test_tickers_in_goroutines_on_other_workers() -> None:
    async def tick_three() -> int:
        ticker = gorun.Ticker(TICK / 2)
        count = 0
        try:
            async for _ in ticker:
                count += 1
                if count == 3:
                    break
        finally:
            ticker.stop()
        return count

    async def main() -> list[int]:
        gs = [gorun.go(tick_three()) for _ in range(8)]
        return [await g for g in gs]

    assert run(main(), procs=4) == [3] * 8


def test_ticker_shared_by_goroutines_on_several_workers() -> None:
    async def take(ticker: gorun.Ticker, n: int) -> int:
        for _ in range(n):
            await ticker.recv()
        return n

    async def main() -> int:
        ticker = gorun.Ticker(TICK / 2)
        gs = [gorun.go(take(ticker, 2)) for _ in range(4)]
        total = sum([await g for g in gs])
        ticker.stop()
        return total

    assert run(main(), procs=4) == 8


def test_ticker_from_a_plain_thread() -> None:
    ticker = gorun.Ticker(TICK)
    try:
        first = ticker.recv_blocking(timeout=WAIT)
        second = ticker.recv_blocking(timeout=WAIT)
        assert first < second
    finally:
        ticker.stop()


# -- garbage --------------------------------------------------------------------------------


def test_unreferenced_ticker_is_collected_and_its_callback_cancelled() -> None:
    async def main() -> None:
        ticker = gorun.Ticker(TICK)
        await ticker.recv()
        handle = ticker.c._handle  # type: ignore[attr-defined]
        assert handle is not None
        ref = weakref.ref(ticker)
        chan_ref = weakref.ref(ticker.c)
        del ticker
        # The receive's waiter (the future that woke this step, which names the channel
        # it waited on, for gorun.dump()) lives until the step ends, as any awaited
        # future does: yield once.
        await asyncio.sleep(0)
        gc.collect()
        assert ref() is None
        assert chan_ref() is None
        assert handle.cancelled()

    run(main(), procs=1)


def test_unreferenced_ticker_is_not_rescheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dropped on a plain thread, the pending callback cannot be cancelled from here;
    # it finds the ticker gone and does not schedule another.
    calls_after_drop = 0
    dropped = threading.Event()
    real_fire = _time._fire

    def counting_fire(ref: Any, seq: int) -> None:
        nonlocal calls_after_drop
        if dropped.is_set():
            calls_after_drop += 1
        real_fire(ref, seq)

    monkeypatch.setattr(_time, "_fire", counting_fire)
    ticker = gorun.Ticker(TICK)
    ticker.recv_blocking(timeout=WAIT)
    ref = weakref.ref(ticker)
    del ticker
    deadline = time.monotonic() + WAIT
    while ref() is not None and time.monotonic() < deadline:  # a callback may hold it
        gc.collect()
        time.sleep(TICK / 10)
    assert ref() is None
    dropped.set()
    time.sleep(10 * TICK)
    assert calls_after_drop <= 1


def test_after_in_a_timeout_loop_is_freed_when_the_channel_wins() -> None:
    async def main() -> None:
        ch: gorun.Chan[int] = gorun.Chan(1)
        refs = []
        for i in range(20):
            ch.send_nowait(i)
            timeout = gorun.after(WAIT * 10)
            refs.append(weakref.ref(timeout))
            assert await gorun.select(ch.recv, timeout.recv) == (0, i)
            del timeout
        gc.collect()
        assert all(r() is None for r in refs)

    run(main())


def test_a_waiting_receiver_keeps_an_unreferenced_timer_alive() -> None:
    async def main() -> float:
        return await gorun.Timer(TICK).recv()  # only the recv refers to the timer

    assert isinstance(run(main()), float)


# -- arguments and reprs --------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_non_numbers_are_rejected(bad: Any) -> None:
    with pytest.raises(TypeError, match="number of seconds"):
        gorun.after(bad)
    with pytest.raises(TypeError, match="number of seconds"):
        gorun.Timer(bad)
    with pytest.raises(TypeError, match="number of seconds"):
        gorun.Ticker(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf")])
def test_negative_or_non_finite_seconds_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="after"):
        gorun.after(bad)
    with pytest.raises(ValueError, match="Timer seconds"):
        gorun.Timer(bad)


@pytest.mark.parametrize("bad", [0, 0.0, -1])
def test_ticker_period_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="more than 0"):
        gorun.Ticker(bad)


def test_bad_reset_leaves_the_timer_unchanged() -> None:
    async def main() -> None:
        t = gorun.Timer(TICK)
        with pytest.raises(ValueError, match=r"Timer\.reset"):
            t.reset(-1)
        assert isinstance(await t.recv(), float)
        ticker = gorun.Ticker(TICK)
        with pytest.raises(ValueError, match=r"Ticker\.reset"):
            ticker.reset(0)
        with pytest.raises(TypeError, match=r"Ticker\.reset"):
            ticker.reset("1")  # type: ignore[arg-type]
        assert isinstance(await ticker.recv(), float)
        ticker.stop()

    run(main())


def test_reprs() -> None:
    async def main() -> None:
        t = gorun.Timer(WAIT * 10)
        assert repr(t).startswith("<Timer next in ")
        t.stop()
        assert "inactive" in repr(t)
        ticker = gorun.Ticker(WAIT * 10)
        assert f"period={WAIT * 10}s" in repr(ticker)
        ticker.stop()
        assert "inactive" in repr(ticker)
        assert "receive-only" in repr(gorun.after(0))
        assert t.chan is t.c

    run(main())
