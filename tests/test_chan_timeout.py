"""``send(v, timeout=)``, ``recv(timeout=)`` and ``recv_ok(timeout=)``: exactly one of the
operation and its timeout wins, as in a ``select`` with a timer case."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import gorun
from tests.support import PROCS, until_parked


def test_a_send_that_times_out_sent_nothing() -> None:
    async def main() -> tuple[bool, int]:
        ch: gorun.Chan[int] = gorun.Chan()
        with pytest.raises(TimeoutError, match=r"send did not complete within 0\.01 seconds"):
            await ch.send(1, timeout=0.01)
        with pytest.raises(gorun.WouldBlock):
            ch.recv_nowait()  # no sender is left parked
        return ch.closed, len(ch._sendq)

    assert gorun.run(main(), procs=1) == (False, 0)


@pytest.mark.parametrize("op", ["recv", "recv_ok"])
def test_a_receive_that_times_out_took_nothing(op: str) -> None:
    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan(1)
        with pytest.raises(TimeoutError, match=f"{op} did not complete within"):
            await getattr(ch, op)(timeout=0.01)
        ch.send_nowait(4)  # the receiver left: the value is buffered, not handed to it
        return ch.recv_nowait()

    assert gorun.run(main(), procs=1) == 4


def test_a_timed_send_that_a_receiver_takes_completes() -> None:
    async def main() -> list[Any]:
        ch: gorun.Chan[int] = gorun.Chan()
        sender = gorun.go(ch.send(2, timeout=60))
        got: list[Any] = [await ch.recv(timeout=60)]
        await sender
        receiver = gorun.go(ch.recv_ok(timeout=60))
        await until_parked(ch, receivers=1)
        await ch.send(3, timeout=60)
        got.append(await receiver)
        return got

    assert gorun.run(main(), procs=PROCS) == [2, (3, True)]


def test_timeout_zero_tries_once_without_waiting() -> None:
    async def main() -> list[Any]:
        ch: gorun.Chan[int] = gorun.Chan(1)
        await ch.send(1, timeout=0)  # buffer space: done at once
        with pytest.raises(TimeoutError, match="send would block, and its timeout is 0"):
            await ch.send(2, timeout=0)
        got: list[Any] = [await ch.recv(timeout=0)]
        with pytest.raises(TimeoutError, match="recv would block"):
            await ch.recv(timeout=0)
        with pytest.raises(TimeoutError, match="recv_ok would block"):
            await ch.recv_ok(timeout=0)
        ch.close()
        got.append(await ch.recv_ok(timeout=0))
        return got

    assert gorun.run(main(), procs=1) == [1, (None, False)]


def test_a_timed_operation_on_a_closed_channel_raises_closed() -> None:
    async def main() -> list[str]:
        ch: gorun.Chan[int] = gorun.Chan()
        seen = []
        waiting = gorun.go(ch.recv(timeout=60))
        await until_parked(ch, receivers=1)
        ch.close()
        for aw in (waiting, ch.send(1, timeout=60), ch.recv(timeout=60)):
            try:
                await aw
            except gorun.Closed:
                seen.append("closed")
        return seen

    assert gorun.run(main(), procs=PROCS) == ["closed"] * 3


@pytest.mark.parametrize(
    ("timeout", "error", "match"),
    [
        ("1", TypeError, r"send\(\) timeout must be a number of seconds"),
        (True, TypeError, r"send\(\) timeout must be a number of seconds"),
        (-1, ValueError, r"send\(\) timeout must be 0 or more seconds, got -1"),
        (float("nan"), ValueError, r"send\(\) timeout must be a finite number"),
    ],
)
def test_a_bad_timeout_is_a_clear_error_even_when_no_wait_is_needed(
    timeout: Any, error: type[Exception], match: str
) -> None:
    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan(1)
        with pytest.raises(error, match=match):
            await ch.send(1, timeout=timeout)
        return len(ch)  # nothing was sent

    assert gorun.run(main(), procs=1) == 0


def test_a_timeout_and_a_hand_off_in_the_same_instant_commit_exactly_one() -> None:
    # A plain thread sends as the timeout expires, many times: each value is either
    # received (the receive won) or still the sender's (the timeout won), never both.
    rounds = 300

    async def main() -> tuple[int, int]:
        ch: gorun.Chan[int] = gorun.Chan()
        received, timed_out = 0, 0
        for i in range(rounds):
            thread = threading.Thread(target=_send_soon, args=(ch, i))
            thread.start()
            try:
                assert await ch.recv(timeout=0.0002) == i
                received += 1
            except TimeoutError:
                timed_out += 1
                assert await ch.recv() == i  # the value is still the sender's
            await asyncio.to_thread(thread.join)
        return received, timed_out

    received, timed_out = gorun.run(main(), procs=1)
    assert received + timed_out == rounds


def _send_soon(ch: gorun.Chan[int], value: int) -> None:
    ch.send_blocking(value, timeout=10)


def test_a_goroutine_in_a_timed_wait_is_not_a_deadlock() -> None:
    async def main() -> str:
        ch: gorun.Chan[int] = gorun.Chan()
        try:
            await ch.recv(timeout=0.05)  # only the timer can end this wait
        except TimeoutError:
            return "timed out"
        return "received"

    assert gorun.run(main(), procs=PROCS) == "timed out"
