"""Channels: the API, rendezvous and buffering, close, plain threads, cancellation races.

Events are ordered without sleeps: a goroutine that blocks its worker thread in
``barrier.wait()`` forces the others onto other workers (``support.pinner``), and
``until_parked`` yields until a channel shows the expected parked senders or receivers.
The exchange tests at the end (``support.run_exchange``, also driven by
``test_chan_stress.py``) check that no value is lost or duplicated while waiting
operations are cancelled at random.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import gorun
from tests.support import (
    PROCS,
    TIMEOUT,
    Exchange,
    outcome,
    parked,
    pinner,
    run_exchange,
    until_parked,
    until_parked_blocking,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_never_awaited")]


# -- helpers ------------------------------------------------------------------------------


async def join(thread: threading.Thread) -> None:
    await asyncio.to_thread(thread.join, TIMEOUT)
    assert not thread.is_alive()


def blocking_outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (gorun.Closed, TimeoutError) as exc:
        return type(exc)


# -- construction -------------------------------------------------------------------------


def test_constructor_and_properties() -> None:
    ch: gorun.Chan[int] = gorun.Chan()
    assert ch.cap == 0
    assert len(ch) == 0
    assert not ch.closed
    typed = gorun.Chan[int](0)  # generic at runtime
    assert typed.cap == 0
    assert isinstance(typed, gorun.Chan)
    buffered = gorun.Chan[str](3)
    assert buffered.cap == 3
    assert gorun.Chan(cap=2).cap == 2
    assert "cap=3" in repr(buffered)
    buffered.send_nowait("a")
    assert len(buffered) == 1
    buffered.close()
    assert buffered.closed
    assert "closed" in repr(buffered)


@pytest.mark.parametrize(
    ("cap", "error"),
    [
        (-1, ValueError),
        (-100, ValueError),
        (1.5, TypeError),
        (1.0, TypeError),
        ("1", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_cap(cap: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        gorun.Chan(cap)


# -- non-blocking operations ----------------------------------------------------------------


def test_nowait_on_unbuffered_would_block() -> None:
    ch = gorun.Chan[int]()
    with pytest.raises(gorun.WouldBlock):
        ch.send_nowait(1)
    with pytest.raises(gorun.WouldBlock):
        ch.recv_nowait()
    assert len(ch) == 0


def test_buffered_fifo_len_and_would_block() -> None:
    ch = gorun.Chan[int](3)
    for i in range(3):
        ch.send_nowait(i)
        assert len(ch) == i + 1
    with pytest.raises(gorun.WouldBlock):
        ch.send_nowait(99)
    assert len(ch) == 3
    assert [ch.recv_nowait() for _ in range(3)] == [0, 1, 2]
    assert len(ch) == 0
    with pytest.raises(gorun.WouldBlock):
        ch.recv_nowait()


def test_close_semantics_without_waiting() -> None:
    ch = gorun.Chan[int](2)
    ch.send_nowait(1)
    ch.send_nowait(2)
    ch.close()
    assert ch.closed
    with pytest.raises(gorun.Closed):
        ch.send_nowait(3)
    with pytest.raises(gorun.Closed):
        ch.close()  # a second close
    assert len(ch) == 2
    assert ch.recv_nowait() == 1  # buffered values are still delivered
    assert ch.recv_nowait() == 2
    with pytest.raises(gorun.Closed):
        ch.recv_nowait()
    with pytest.raises(gorun.Closed):
        ch.recv_nowait()  # and stays so
    assert issubclass(gorun.Closed, Exception)
    assert issubclass(gorun.WouldBlock, Exception)


def test_awaitable_close_semantics() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int](2)
        await ch.send(1)
        await ch.send(2)
        ch.close()
        return [
            await outcome(ch.send(3)),
            await ch.recv(),
            await ch.recv_ok(),
            await outcome(ch.recv()),
            await ch.recv_ok(),
            await ch.recv_ok(),
        ]

    assert gorun.run(main(), procs=1) == [
        gorun.Closed,
        1,
        (2, True),
        gorun.Closed,
        (None, False),
        (None, False),
    ]


def test_recv_ok_returns_value_and_true() -> None:
    async def main() -> tuple[Any, Any]:
        ch = gorun.Chan[int | None](1)
        await ch.send(None)  # a None value is not a close
        first = await ch.recv_ok()
        ch.close()
        return first, await ch.recv_ok()

    assert gorun.run(main(), procs=1) == ((None, True), (None, False))


# -- rendezvous and buffering ---------------------------------------------------------------


def test_unbuffered_send_waits_for_a_receiver_on_one_loop() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        log: list[str] = []

        async def sender() -> None:
            log.append("sending")
            await ch.send(7)
            log.append("sent")

        g = gorun.go(sender())
        await until_parked(ch, senders=1)
        state = [list(log), g.done(), len(ch)]
        value = await ch.recv()
        await g
        return [*state, value, log]

    assert gorun.run(main(), procs=1) == [["sending"], False, 0, 7, ["sending", "sent"]]


async def _hand_offs(rounds: int) -> None:
    # Blocked sends and receives (unbuffered and buffered) and selects that park.
    ping, pong, buf = gorun.Chan[int](), gorun.Chan[int](), gorun.Chan[int](1)

    async def echo() -> None:
        for _ in range(rounds):
            await pong.send(await ping.recv())
            _, v = await gorun.select(buf.recv, pong.recv)
            await gorun.select((pong.send, v))

    g = asyncio.ensure_future(echo())
    for i in range(rounds):
        await ping.send(i)
        assert await pong.recv() == i
        await asyncio.sleep(0)
        await buf.send(i)
        assert await pong.recv() == i
    await g


@pytest.mark.parametrize("on", ["gorun", "asyncio"])
def test_hand_offs_leave_nothing_for_the_garbage_collector(on: str) -> None:
    # A blocked operation and its future are freed as soon as it completes: a reference
    # cycle per hand-off would make the collector run every few hundred messages.
    async def main() -> int:
        await _hand_offs(5)  # warm up: first-use caches are not garbage
        gc.collect()
        gc.disable()
        try:
            await _hand_offs(200)
            return gc.collect()
        finally:
            gc.enable()

    if on == "gorun":
        assert gorun.run(main(), procs=1) == 0
    else:
        assert asyncio.run(main()) == 0


def test_unbuffered_rendezvous_across_workers() -> None:
    pin = pinner(2)

    async def main() -> tuple[int, int, bool, int]:
        ch = gorun.Chan[int]()

        async def sender() -> int:
            ident = pin()
            await ch.send(42)
            # The value is taken, not waiting in a buffer.
            assert len(ch) == 0
            return ident

        g = gorun.go(sender())
        here = pin()
        await until_parked(ch, senders=1)
        done_before = g.done()
        value = await ch.recv()
        return here, await g, done_before, value

    here, there, done_before, value = gorun.run(main(), procs=PROCS)
    assert here != there
    assert not done_before
    assert value == 42


@pytest.mark.parametrize("cap", [0, 1, 4])
def test_values_arrive_in_order_across_workers(cap: int) -> None:
    n = 500
    pin = pinner(2)

    async def main() -> tuple[list[int], int, int]:
        ch = gorun.Chan[int](cap)

        async def producer() -> int:
            ident = pin()
            for i in range(n):
                await ch.send(i)
            ch.close()
            return ident

        async def consumer() -> tuple[list[int], int]:
            ident = pin()
            return [v async for v in ch], ident

        p = gorun.go(producer())
        c = gorun.go(consumer())
        got, c_ident = await c
        return got, await p, c_ident

    got, p_ident, c_ident = gorun.run(main(), procs=PROCS)
    assert got == list(range(n))
    assert p_ident != c_ident


def test_buffered_send_waits_when_full() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int](2)
        await ch.send(1)
        await ch.send(2)
        g = gorun.go(ch.send(3))
        await until_parked(ch, senders=1)
        waiting = [g.done(), len(ch)]
        first = await ch.recv()  # frees a slot: the parked value moves into it
        await g
        return [*waiting, first, len(ch), ch.recv_nowait(), ch.recv_nowait()]

    assert gorun.run(main(), procs=PROCS) == [False, 2, 1, 2, 2, 3]


def test_parked_receivers_are_served_in_order() -> None:
    async def main() -> list[tuple[int, int]]:
        ch = gorun.Chan[int]()
        got: list[tuple[int, int]] = []

        async def receiver(k: int) -> None:
            got.append((k, await ch.recv()))

        gs = []
        for k in range(5):
            gs.append(gorun.go(receiver(k), local=True))
            await until_parked(ch, receivers=k + 1)
        for v in range(5):
            ch.send_nowait(v * 10)
        for g in gs:
            await g
        return sorted(got)

    assert gorun.run(main(), procs=2) == [(k, k * 10) for k in range(5)]


@pytest.mark.parametrize("value", ["taken", "cancelled", "timed out", "CLOSED", None])
def test_a_parked_receive_gets_any_value_even_one_named_like_a_mark(value: Any) -> None:
    # A parked receive keeps its state and the value handed over in one slot: the marks
    # it tells them by are objects nobody can send, not strings a sender could reuse.
    async def main() -> list[Any]:
        ch = gorun.Chan[Any]()
        got: list[Any] = []

        async def receive(timed: bool) -> None:
            got.append(await (ch.recv(timeout=60) if timed else ch.recv()))
            got.append(await ch.recv_ok())

        for timed in (False, True):
            g = gorun.go(receive(timed), local=True)
            await until_parked(ch, receivers=1)
            ch.send_nowait(value)
            await until_parked(ch, receivers=1)
            ch.send_nowait(value)
            await g
        return got

    assert gorun.run(main(), procs=1) == [value, (value, True)] * 2


def test_async_for_ends_when_closed_and_drained() -> None:
    pin = pinner(2)

    async def main() -> list[int]:
        ch = gorun.Chan[int](3)

        async def producer() -> None:
            pin()
            for i in range(20):
                await ch.send(i)
            ch.close()

        g = gorun.go(producer())
        pin()
        got = [v async for v in ch]
        await g
        return got

    assert gorun.run(main(), procs=PROCS) == list(range(20))


def test_async_for_on_closed_buffered_channel_yields_the_rest() -> None:
    async def main() -> list[int]:
        ch = gorun.Chan[int](3)
        for i in range(3):
            ch.send_nowait(i)
        ch.close()
        return [v async for v in ch]

    assert gorun.run(main(), procs=1) == [0, 1, 2]


# -- close wakes everyone -------------------------------------------------------------------


def test_close_wakes_blocked_senders_everywhere() -> None:
    pin = pinner(PROCS)

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        ch = gorun.Chan[int](1)
        ch.send_nowait(-1)  # full: every send below parks

        async def sender(v: int) -> tuple[int, Any]:
            ident = pin()
            return ident, await outcome(ch.send(v))

        async def select_sender(v: int) -> Any:
            return await outcome(gorun.select((ch.send, v)))

        thread_out: list[Any] = []

        def thread_sender(v: int) -> None:
            thread_out.append(blocking_outcome(lambda: ch.send_blocking(v)))

        gs = [gorun.go(sender(i)) for i in range(PROCS)]
        sel = gorun.go(select_sender(100))
        threads = [threading.Thread(target=thread_sender, args=(200 + i,)) for i in range(2)]
        for t in threads:
            t.start()
        await until_parked(ch, senders=PROCS + 3)
        ch.close()
        results = [await g for g in gs]
        sel_out = await sel
        for t in threads:
            await join(t)
        assert len({ident for ident, _ in results}) == PROCS
        rest = [await outcome(ch.recv()), await outcome(ch.recv())]
        return [r for _, r in results] + [sel_out], thread_out, rest

    senders, threads, rest = gorun.run(main(), procs=PROCS)
    assert senders == [gorun.Closed] * (PROCS + 1)
    assert threads == [gorun.Closed] * 2
    assert rest == [-1, gorun.Closed]  # the buffered value only: no parked value got in


def test_close_wakes_blocked_receivers_everywhere() -> None:
    pin = pinner(PROCS)

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        ch = gorun.Chan[int]()

        async def receiver(k: int) -> tuple[int, Any]:
            ident = pin()
            if k % 2:
                return ident, await ch.recv_ok()
            return ident, await outcome(ch.recv())

        async def selectors() -> list[Any]:
            a = gorun.go(outcome(gorun.select(ch.recv)), local=True)
            b = gorun.go(gorun.select(ch.recv_ok), local=True)
            return [await a, await b]

        thread_out: list[Any] = []

        def thread_receiver() -> None:
            thread_out.append(blocking_outcome(ch.recv_blocking))

        gs = [gorun.go(receiver(k)) for k in range(PROCS)]
        sel = gorun.go(selectors())
        threads = [threading.Thread(target=thread_receiver) for _ in range(2)]
        for t in threads:
            t.start()
        await until_parked(ch, receivers=PROCS + 4)
        ch.close()
        results = [await g for g in gs]
        for t in threads:
            await join(t)
        assert len({ident for ident, _ in results}) == PROCS
        return [r for _, r in results], await sel, thread_out

    receivers, selects, threads = gorun.run(main(), procs=PROCS)
    assert receivers == [gorun.Closed, (None, False)] * (PROCS // 2)
    assert selects == [gorun.Closed, (0, (None, False))]
    assert threads == [gorun.Closed] * 2


def test_close_while_buffered_values_wait_lets_receivers_drain() -> None:
    pin = pinner(3)

    async def main() -> list[int]:
        ch = gorun.Chan[int](10)
        for i in range(10):
            ch.send_nowait(i)
        ch.close()

        async def drain() -> list[int]:
            pin()
            return [v async for v in ch]

        gs = [gorun.go(drain()) for _ in range(3)]
        got: list[int] = []
        for g in gs:
            got.extend(await g)
        return sorted(got)

    assert gorun.run(main(), procs=PROCS) == list(range(10))


# -- plain threads ---------------------------------------------------------------------------


def test_blocking_calls_between_threads_and_goroutines() -> None:
    async def main() -> tuple[list[int], list[int]]:
        to_thread = gorun.Chan[int]()
        from_thread = gorun.Chan[int]()
        received_by_thread: list[int] = []

        def plain() -> None:
            for i in range(50):
                from_thread.send_blocking(i)
            while True:
                try:
                    received_by_thread.append(to_thread.recv_blocking())
                except gorun.Closed:
                    return

        t = threading.Thread(target=plain)
        t.start()
        got = [await from_thread.recv() for _ in range(50)]
        for i in range(50):
            await to_thread.send(i * 2)
        to_thread.close()
        await join(t)
        return got, received_by_thread

    got, by_thread = gorun.run(main(), procs=PROCS)
    assert got == list(range(50))
    assert by_thread == [i * 2 for i in range(50)]


def test_blocking_calls_between_plain_threads() -> None:
    ch = gorun.Chan[int](2)
    out: list[int] = []

    def consumer() -> None:
        while True:
            try:
                out.append(ch.recv_blocking(timeout=TIMEOUT))
            except gorun.Closed:
                return

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(100):
        ch.send_blocking(i, timeout=TIMEOUT)
    ch.close()
    t.join(TIMEOUT)
    assert out == list(range(100))


def test_blocking_timeouts_take_and_give_nothing() -> None:
    ch = gorun.Chan[int]()
    with pytest.raises(TimeoutError):
        ch.send_blocking(1, timeout=0.01)
    with pytest.raises(TimeoutError):
        ch.recv_blocking(timeout=0.01)
    with pytest.raises(TimeoutError):
        ch.send_blocking(1, timeout=0)
    assert parked(ch) == (0, 0)  # the timed-out waiters are gone
    with pytest.raises(gorun.WouldBlock):
        ch.send_nowait(2)
    with pytest.raises(gorun.WouldBlock):
        ch.recv_nowait()
    full = gorun.Chan[int](1)
    full.send_blocking(1, timeout=0)  # room: no waiting, no timeout
    with pytest.raises(TimeoutError):
        full.send_blocking(2, timeout=0.01)
    assert full.recv_blocking(timeout=0) == 1
    with pytest.raises(gorun.WouldBlock):
        full.recv_nowait()  # 2 was not sent


def test_blocking_calls_see_close() -> None:
    ch = gorun.Chan[int](1)
    ch.send_blocking(5)
    ch.close()
    with pytest.raises(gorun.Closed):
        ch.send_blocking(6)
    assert ch.recv_blocking() == 5
    with pytest.raises(gorun.Closed):
        ch.recv_blocking()
    with pytest.raises(gorun.Closed):
        ch.recv_blocking(timeout=0)


def test_parked_blocking_calls_wake_on_close() -> None:
    full = gorun.Chan[int](1)
    full.send_nowait(0)
    empty = gorun.Chan[int]()
    out: dict[str, Any] = {}

    def send() -> None:
        out["send"] = blocking_outcome(lambda: full.send_blocking(1, timeout=TIMEOUT))

    def recv() -> None:
        out["recv"] = blocking_outcome(lambda: empty.recv_blocking(timeout=TIMEOUT))

    threads = [threading.Thread(target=send), threading.Thread(target=recv)]
    for t in threads:
        t.start()
    until_parked_blocking(full, senders=1)
    until_parked_blocking(empty, receivers=1)
    full.close()
    empty.close()
    for t in threads:
        t.join(TIMEOUT)
    assert out == {"send": gorun.Closed, "recv": gorun.Closed}
    assert full.recv_blocking() == 0
    with pytest.raises(gorun.Closed):
        full.recv_blocking()


def test_blocking_calls_on_an_event_loop_thread_raise() -> None:
    async def attempt() -> list[str]:
        ch = gorun.Chan[int](1)
        ch.send_nowait(1)
        errors = []
        for call in (lambda: ch.send_blocking(2), ch.recv_blocking):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
        assert len(ch) == 1  # nothing sent, nothing taken
        return errors

    async def main() -> tuple[list[str], list[str]]:
        return await attempt(), await gorun.go(attempt())

    for errors in gorun.run(main(), procs=2):
        assert len(errors) == 2
        assert all("event loop" in e for e in errors)
    assert len(asyncio.run(attempt())) == 2  # a plain asyncio loop too


def test_foreign_asyncio_loop_and_goroutines() -> None:
    ch = gorun.Chan[int]()
    back = gorun.Chan[int](1)

    async def foreign() -> list[int]:
        got = []
        for _ in range(20):
            v = await ch.recv()
            await back.send(v + 1)
            got.append(v)
        return got

    result: list[list[int]] = []
    t = threading.Thread(target=lambda: result.append(asyncio.run(foreign())))
    t.start()

    async def main() -> list[int]:
        replies = []
        for i in range(20):
            await ch.send(i)
            replies.append(await back.recv())
        await join(t)
        return replies

    assert gorun.run(main(), procs=2) == list(range(1, 21))
    assert result == [list(range(20))]


# -- cancellation ------------------------------------------------------------------------------


def test_cancelled_parked_recv_takes_nothing() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        task = asyncio.create_task(ch.recv())
        await until_parked(ch, receivers=1)
        task.cancel()
        out = [await outcome(task), parked(ch)]
        try:
            ch.send_nowait(1)  # no receiver is left to take it
        except gorun.WouldBlock:
            out.append("would block")
        return out

    assert gorun.run(main(), procs=1) == [asyncio.CancelledError, (0, 0), "would block"]


def test_cancelled_parked_send_sends_nothing() -> None:
    pin = pinner(2)

    async def main() -> list[Any]:
        ch = gorun.Chan[int]()

        async def sender() -> None:
            pin()
            await ch.send(1)

        g = gorun.go(sender())
        pin()
        await until_parked(ch, senders=1)
        g.cancel()
        out = [await outcome(g), parked(ch)]
        try:
            ch.recv_nowait()
        except gorun.WouldBlock:
            out.append("would block")
        ch.close()
        out.append(await ch.recv_ok())
        return out

    assert gorun.run(main(), procs=PROCS) == [
        asyncio.CancelledError,
        (0, 0),
        "would block",
        (None, False),
    ]


def test_cancelled_buffered_send_sends_nothing() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int](1)
        ch.send_nowait(1)
        task = asyncio.create_task(ch.send(2))
        await until_parked(ch, senders=1)
        task.cancel()
        out = [await outcome(task), ch.recv_nowait()]
        try:
            ch.recv_nowait()
        except gorun.WouldBlock:
            out.append("would block")
        return out

    assert gorun.run(main(), procs=1) == [asyncio.CancelledError, 1, "would block"]


def test_recv_cancelled_as_a_value_arrives_passes_it_on() -> None:
    # The hand-off and the cancel happen in one callback on the receiver's loop, so the
    # hand-off claims the receiver before its task sees the cancellation. The receive
    # raises (with the cancel's message) and the value goes on to the next receiver.
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        other = gorun.Chan[int]()
        log: list[Any] = []

        async def receiver() -> None:
            try:
                log.append(await ch.recv())
            except asyncio.CancelledError as exc:
                log.append(("cancelled", exc.args))
                raise

        task = asyncio.create_task(receiver())
        await until_parked(ch, receivers=1)
        second = asyncio.create_task(gorun.select(other.recv, ch.recv))
        await until_parked(ch, receivers=2)
        ch.send_nowait(9)  # claims the first receiver
        task.cancel("stop")
        log.append(await outcome(task))
        log.append(await second)
        log.append(parked(other))
        return log

    assert gorun.run(main(), procs=1) == [
        ("cancelled", ("stop",)),
        asyncio.CancelledError,
        (1, 9),
        (0, 0),
    ]


def test_recv_ok_cancelled_as_close_arrives_raises() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        task = asyncio.create_task(ch.recv_ok())
        await until_parked(ch, receivers=1)
        task.cancel()
        ch.close()  # claims the receiver with (None, False); the cancel still wins
        return [await outcome(task), await ch.recv_ok(), len(ch)]

    assert gorun.run(main(), procs=1) == [asyncio.CancelledError, (None, False), 0]


def test_recv_cancelled_as_a_value_arrives_after_close_is_still_delivered() -> None:
    # The value goes back into the (closed) channel even after a receiver saw it
    # drained: a cancelled receive never loses a value.
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        task = asyncio.create_task(ch.recv())
        await until_parked(ch, receivers=1)
        ch.send_nowait(4)
        ch.close()
        task.cancel()
        out = [await outcome(ch.recv())]  # closed and drained, for now
        out.append(await outcome(task))
        out += [len(ch), await ch.recv_ok(), await ch.recv_ok()]
        return out

    assert gorun.run(main(), procs=1) == [
        gorun.Closed,
        asyncio.CancelledError,
        1,
        (4, True),
        (None, False),
    ]


def test_send_taken_as_it_is_cancelled_completes_and_raises_later() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        log: list[Any] = []

        async def sender() -> None:
            await ch.send(5)
            log.append("sent")
            await asyncio.sleep(0)
            log.append("not cancelled")

        task = asyncio.create_task(sender())
        await until_parked(ch, senders=1)
        task.cancel()
        log.append(ch.recv_nowait())  # takes the parked value after the cancel
        log.append(await outcome(task))
        return log

    assert gorun.run(main(), procs=1) == [5, "sent", asyncio.CancelledError]


def test_send_closed_as_it_is_cancelled_raises_closed_then_cancelled() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        log: list[Any] = []

        async def sender() -> None:
            try:
                await ch.send(5)
            except gorun.Closed:
                log.append("closed")
            await asyncio.sleep(0)
            log.append("not cancelled")

        task = asyncio.create_task(sender())
        await until_parked(ch, senders=1)
        task.cancel()
        ch.close()
        log.append(await outcome(task))
        return log

    assert gorun.run(main(), procs=1) == ["closed", asyncio.CancelledError]


JITTER = (0.0, 0.0, 1e-4, 1e-3)


def test_recv_under_timeout_races_a_sender_on_another_worker(seed: int) -> None:
    # Either the receive returns the value (and the sender's send completed, nothing is
    # left for anyone else), or it times out and the value is still there to take (a
    # value handed over as the timeout fired went back to the channel).
    rounds = 150
    rng = random.Random(seed)
    pin = pinner(2)
    Job = tuple[gorun.Chan[int], gorun.Chan[None]]

    async def main() -> Counter[str]:
        control = gorun.Chan[Job | None]()
        results = gorun.Chan[Any]()

        async def sender() -> int:
            ident = pin()
            jitter = random.Random(seed + 1)
            i = 0
            while (job := await control.recv()) is not None:
                ch, done = job
                await asyncio.sleep(jitter.choice(JITTER))  # either may come first
                await results.send(await gorun.select((ch.send, i), done.recv_ok))
                i += 1
            return ident

        g = gorun.go(sender())
        here = pin()
        seen: Counter[str] = Counter()
        for i in range(rounds):
            ch = gorun.Chan[int]()
            done = gorun.Chan[None]()
            await control.send((ch, done))
            delay = rng.choice([0.0, 1e-5, 1e-4, 5e-4])
            try:
                async with asyncio.timeout(delay):
                    got = await ch.recv()
            except TimeoutError:
                seen["timeout"] += 1
                assert await ch.recv() == i  # still there
            else:
                seen["received"] += 1
                assert got == i
            await asyncio.sleep(0)  # a cancelled receive never re-raises later
            done.close()
            assert await results.recv() == (0, None)  # the send happened, exactly once
            with pytest.raises(gorun.WouldBlock):
                ch.recv_nowait()
        await control.send(None)
        assert await g != here
        return seen

    seen = gorun.run(main(), procs=PROCS)
    assert seen["timeout"] + seen["received"] == rounds


def test_send_under_timeout_races_a_receiver_on_another_worker(seed: int) -> None:
    # Either the send completes (and the receiver has the value), or it times out and
    # nothing was sent. On Python < 3.13 a timeout that fired as the value was taken
    # comes as a CancelledError at the first await after the block (see the guide); it
    # must not undo the send either.
    rounds = 150
    rng = random.Random(seed)
    pin = pinner(2)
    Job = tuple[gorun.Chan[int], gorun.Chan[None]]

    async def main() -> Counter[str]:
        control = gorun.Chan[Job | None]()
        results = gorun.Chan[Any]()

        async def receiver() -> int:
            ident = pin()
            jitter = random.Random(seed + 1)
            while (job := await control.recv()) is not None:
                ch, done = job
                await asyncio.sleep(jitter.choice(JITTER))  # either may come first
                await results.send(await gorun.select(ch.recv, done.recv_ok))
            return ident

        g = gorun.go(receiver())
        here = pin()
        seen: Counter[str] = Counter()
        for i in range(rounds):
            ch = gorun.Chan[int]()
            done = gorun.Chan[None]()
            await control.send((ch, done))
            sent = False
            try:
                async with asyncio.timeout(rng.choice([0.0, 1e-5, 1e-4, 5e-4])):
                    await ch.send(i)
                    sent = True
            except TimeoutError:
                seen["timeout"] += 1
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                assert sent  # only a completed send re-raises later
                task = asyncio.current_task()
                assert task is not None
                task.uncancel()
                seen["cancelled after the block"] += 1
            done.close()
            assert await results.recv() == ((0, i) if sent else (1, (None, False)))
            seen["sent" if sent else "not sent"] += 1
        await control.send(None)
        assert await g != here
        return seen

    seen = gorun.run(main(), procs=PROCS)
    assert seen["sent"] + seen["not sent"] == rounds


# -- no value lost or duplicated ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "close_early", "cancel_receivers"),
    [
        (0, False, True),
        (1, False, True),
        (16, False, True),
        (0, True, True),
        (4, True, True),
        (0, False, False),
        (2, True, False),
    ],
)
def test_no_value_lost_or_duplicated(
    seed: int, cap: int, close_early: bool, cancel_receivers: bool
) -> None:
    cfg = Exchange(
        seed=seed,
        values=400,
        cap=cap,
        close_early=close_early,
        cancel_receivers=cancel_receivers,
    )
    run_exchange(cfg)


def test_no_value_lost_or_duplicated_on_one_worker(seed: int) -> None:
    run_exchange(
        Exchange(
            seed=seed, values=300, cap=0, procs=1, producers_per_worker=3, consumers_per_worker=3
        )
    )
