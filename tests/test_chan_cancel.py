"""A cancellation that races a hand-off: nothing is lost, nothing is duplicated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import gorun


async def _until(pred: Callable[[], bool]) -> None:
    """Yield to the loop until *pred* holds (a task here has parked itself)."""
    for _ in range(1_000_000):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def _parked(ch: gorun.Chan[int], receivers: int = 1) -> None:
    await _until(lambda: len(ch._recvq) >= receivers)


@pytest.mark.parametrize("cap", [0, 1])
def test_recv_cancelled_as_a_value_arrives_puts_it_back(cap: int) -> None:
    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan(cap)
        task = asyncio.create_task(ch.recv())
        await _parked(ch)
        ch.send_nowait(1)  # hands 1 to the parked receiver and resolves its future
        task.cancel()  # reaches the task before it resumes
        with pytest.raises(asyncio.CancelledError):
            await task
        return ch.recv_nowait()  # the value is back in the channel

    assert gorun.run(main(), procs=1) == 1


def test_put_back_goes_to_the_next_parked_receiver_first() -> None:
    async def main() -> tuple[int, int]:
        ch: gorun.Chan[int] = gorun.Chan()
        first = asyncio.create_task(ch.recv())
        await _parked(ch)
        second = asyncio.create_task(ch.recv())
        await _parked(ch, 2)
        ch.send_nowait(1)  # to first
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        got = await second  # first's value went on to second
        with pytest.raises(gorun.WouldBlock):
            ch.recv_nowait()  # and is not also in the channel
        return got, len(ch)

    assert gorun.run(main(), procs=1) == (1, 0)


def test_put_back_keeps_fifo_order_in_a_buffered_channel() -> None:
    async def main() -> list[int]:
        ch: gorun.Chan[int] = gorun.Chan(2)
        task = asyncio.create_task(ch.recv())
        await _parked(ch)
        ch.send_nowait(1)  # handed to the parked receiver
        ch.send_nowait(2)  # buffered
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ch.close()
        return [v async for v in ch]

    assert gorun.run(main(), procs=1) == [1, 2]


def test_recv_ok_put_back_after_close_is_still_delivered() -> None:
    async def main() -> list[tuple[int | None, bool]]:
        ch: gorun.Chan[int] = gorun.Chan()
        task = asyncio.create_task(ch.recv_ok())
        await _parked(ch)
        ch.send_nowait(7)
        ch.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [await ch.recv_ok(), await ch.recv_ok()]

    assert gorun.run(main(), procs=1) == [(7, True), (None, False)]


def test_send_taken_as_it_is_cancelled_completes_and_cancels_at_the_next_await() -> None:
    async def main() -> tuple[list[str], int]:
        ch: gorun.Chan[int] = gorun.Chan()
        log: list[str] = []

        async def sender() -> None:
            await ch.send(5)
            log.append("sent")
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                log.append("cancelled at next await")
                raise

        task = asyncio.create_task(sender())
        await _until(lambda: len(ch._sendq) == 1)
        value = ch.recv_nowait()  # takes 5 from the parked sender
        task.cancel()  # too late to take the value back
        with pytest.raises(asyncio.CancelledError):
            await task
        return log, value

    assert gorun.run(main(), procs=1) == (["sent", "cancelled at next await"], 5)


def test_select_recv_cancelled_as_it_wins_puts_the_value_back() -> None:
    async def main() -> tuple[int, int]:
        a: gorun.Chan[int] = gorun.Chan()
        b: gorun.Chan[int] = gorun.Chan()
        task = asyncio.create_task(gorun.select(a.recv, b.recv))
        await _until(lambda: len(a._recvq) == 1 and len(b._recvq) == 1)
        b.send_nowait(9)  # the select's b case wins
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return b.recv_nowait(), len(a._recvq)  # value back; no stale waiter left on a

    assert gorun.run(main(), procs=1) == (9, 0)
