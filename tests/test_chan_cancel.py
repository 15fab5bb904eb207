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


# -- a timeout that expires as the hand-off happens -------------------------------------------


async def _expire_then_take(ch: gorun.Chan[int], cm: asyncio.Timeout) -> int:
    # The timeout fires first (it cancels the parked sender's task), and a receiver takes
    # the value before that task resumes: the hand-off and the timeout in one instant.
    loop = asyncio.get_running_loop()
    cm.reschedule(loop.time() - 1)  # runs the timeout's callback next
    await asyncio.sleep(0)  # ... which cancels the sender
    return ch.recv_nowait()  # the sender was cancelled, not yet resumed: still parked


@pytest.mark.parametrize("how", ["send", "select"])
def test_send_taken_as_its_timeout_fires_ends_the_block_normally(how: str) -> None:
    async def main() -> tuple[list[str], int]:
        ch: gorun.Chan[int] = gorun.Chan()
        never: gorun.Chan[int] = gorun.Chan()
        log: list[str] = []
        scope: list[asyncio.Timeout] = []

        async def sender() -> None:
            try:
                async with asyncio.timeout(None) as cm:
                    scope.append(cm)
                    if how == "send":
                        await ch.send(5)
                    else:
                        await gorun.select(never.recv, (ch.send, 5))
                log.append("sent")
            except TimeoutError:
                log.append("timed out")
            for _ in range(3):
                await asyncio.sleep(0)  # no stray cancellation comes later
            log.append("went on")

        task = asyncio.create_task(sender())
        await _until(lambda: len(ch._sendq) == 1)
        value = await _expire_then_take(ch, scope[0])
        await task
        return log, value

    assert gorun.run(main(), procs=1) == (["sent", "went on"], 5)


def test_recv_as_its_timeout_fires_raises_timeout_and_takes_nothing() -> None:
    async def main() -> tuple[bool, int]:
        ch: gorun.Chan[int] = gorun.Chan()
        scope: list[asyncio.Timeout] = []

        async def receiver() -> bool:
            try:
                async with asyncio.timeout(None) as cm:
                    scope.append(cm)
                    await ch.recv()
            except TimeoutError:
                return True
            return False

        task = asyncio.create_task(receiver())
        await _parked(ch)
        scope[0].reschedule(asyncio.get_running_loop().time() - 1)
        await asyncio.sleep(0)  # the timeout cancels the receiver
        ch.send_nowait(3)  # handed to the receiver before it resumes
        timed_out = await task
        return timed_out, ch.recv_nowait()  # the value went back to the channel

    assert gorun.run(main(), procs=1) == (True, 3)


def test_send_taken_as_its_group_aborts_is_sent_and_the_task_still_stops() -> None:
    async def main() -> tuple[list[str], int]:
        ch: gorun.Chan[int] = gorun.Chan()
        log: list[str] = []
        release = asyncio.Event()

        async def sender() -> None:
            await ch.send(8)
            log.append("sent")
            await asyncio.Event().wait()  # the group's cancellation must end this
            log.append("not stopped")

        async def failing() -> None:
            await release.wait()
            raise KeyError("boom")

        async def group() -> None:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(sender())
                tg.create_task(failing())

        task = asyncio.create_task(group())
        await _until(lambda: len(ch._sendq) == 1)
        release.set()
        await asyncio.sleep(0)  # failing() raises; the group cancels sender()
        value = ch.recv_nowait()  # ... which a receiver reaches first
        with pytest.raises(ExceptionGroup) as caught:
            await task
        assert [type(e) for e in caught.value.exceptions] == [KeyError]
        return log, value

    assert gorun.run(main(), procs=1) == (["sent"], 8)


def test_a_cancel_swallowed_before_the_send_is_not_delivered_again() -> None:
    # The task's cancelling() count was above 0 before the send (code that caught a
    # CancelledError and went on, without uncancel()). Only a cancellation requested
    # during the send is handed on, and here the timeout block absorbed that one.
    async def main() -> list[str]:
        ch: gorun.Chan[int] = gorun.Chan()
        log: list[str] = []
        scope: list[asyncio.Timeout] = []

        async def sender() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("went on after a cancel")
            async with asyncio.timeout(None) as cm:
                scope.append(cm)
                await ch.send(1)
            for _ in range(3):
                await asyncio.sleep(0)
            log.append("finished")

        task = asyncio.create_task(sender())
        await asyncio.sleep(0)
        task.cancel()  # swallowed by sender()
        await _until(lambda: len(ch._sendq) == 1)
        assert await _expire_then_take(ch, scope[0]) == 1
        await task
        return log

    assert gorun.run(main(), procs=1) == ["went on after a cancel", "finished"]


def test_a_cancel_during_the_send_is_delivered_after_an_earlier_swallowed_one() -> None:
    async def main() -> list[str]:
        ch: gorun.Chan[int] = gorun.Chan()
        log: list[str] = []

        async def sender() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("went on after a cancel")
            await ch.send(1)
            log.append("sent")
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("cancelled at the next await")
                raise

        task = asyncio.create_task(sender())
        await asyncio.sleep(0)
        task.cancel()  # swallowed by sender()
        await _until(lambda: len(ch._sendq) == 1)
        task.cancel()  # during the send ...
        assert ch.recv_nowait() == 1  # ... which a receiver completes first
        with pytest.raises(asyncio.CancelledError):
            await task
        return log

    assert gorun.run(main(), procs=1) == [
        "went on after a cancel",
        "sent",
        "cancelled at the next await",
    ]
