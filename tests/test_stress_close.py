"""Stress: ``close()`` racing senders and receivers on every worker and on plain threads.

Two kinds of rounds, thousands of each, with members on every worker, on foreign asyncio
loops in plain threads and on plain threads blocked in ``send_blocking`` /
``recv_blocking``:

* every member is parked (all senders on a full channel, or all receivers on an empty
  one) when the channel is closed, by the main goroutine, by a goroutine on whichever
  worker takes it, or by a plain thread: every parked operation ends with ``Closed``
  (``(None, False)`` for ``recv_ok``), and the buffered values are still received;
* senders and receivers exchange values; the main goroutine receives a few of them
  and closes the channel once a random number have been sent, from here, from a
  goroutine or from a plain thread: every send either delivered its value or
  raised ``Closed`` (and its sender stopped), every value delivered is received exactly
  once (by a member, by the main goroutine, or drained after the close), and each
  receiver gets each sender's values in order.

Run with ``pytest -m stress``; the opt-in and the ``seed`` (``GORUN_STRESS_SEED``) are
in ``conftest.py``, the harness in ``support.py``.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import Counter
from typing import Any

import pytest

import gorun
from tests.support import STEP_TIMEOUT, Crew, parked, run_bounded, until

pytestmark = [pytest.mark.stress, pytest.mark.timeout(600)]

ROUNDS = 1_500
#: Member i sends i * STRIDE + 0, 1, 2, ... in a racing round.
STRIDE = 1 << 20


async def _close(ch: gorun.Chan[int]) -> None:
    ch.close()


async def close_from(ch: gorun.Chan[int], how: int) -> None:
    """Close *ch* here (0), from a new goroutine wherever it lands (1), or from a plain
    thread (2)."""
    if how == 0:
        ch.close()
    elif how == 1:
        await gorun.go(_close(ch))
    else:
        await asyncio.to_thread(ch.close)


def _all_parked(ch: gorun.Chan[int], op: str, n: int) -> bool:
    return parked(ch)[0 if op == "send" else 1] == n


def _reached(progress: list[int], goal: int) -> bool:
    return len(progress) >= goal


def _describe(ch: gorun.Chan[int], what: str) -> str:
    return f"{what}; {ch!r} has parked (senders, receivers) {parked(ch)}"


def drain(ch: gorun.Chan[int]) -> list[int]:
    """The values left in a closed channel (``recv_nowait`` until Closed)."""
    out = []
    while True:
        try:
            out.append(ch.recv_nowait())
        except gorun.Closed:
            return out


# -- every operation parked, then close ---------------------------------------------------------


async def _parked_op(
    ch: gorun.Chan[int], never: gorun.Chan[int], op: str, value: int, mode: int
) -> object:
    """One send or receive, in one of its forms; what it ended with."""
    try:
        if op == "send":
            if mode % 2 == 0:
                await ch.send(value)
            else:
                index, _ = await gorun.select(never.recv, (ch.send, value))
                assert index == 1
            return "sent"
        if mode == 0:
            return ("got", await ch.recv())
        if mode == 1:
            v, ok = await ch.recv_ok()
            return ("got", v) if ok else "closed"
        if mode == 2:
            index, got = await gorun.select(never.recv, ch.recv)
            assert index == 1
            return ("got", got)
        index, (v, ok) = await gorun.select(ch.recv_ok, never.recv_ok)
        assert index == 0
        return ("got", v) if ok else "closed"
    except gorun.Closed:
        return "closed"


def _parked_op_blocking(ch: gorun.Chan[int], op: str, value: int) -> object:
    try:
        if op == "send":
            ch.send_blocking(value, timeout=STEP_TIMEOUT)
            return "sent"
        return ("got", ch.recv_blocking(timeout=STEP_TIMEOUT))
    except gorun.Closed:
        return "closed"


def test_stress_close_wakes_every_parked_operation(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> Counter[str]:
        crew = Crew(blocking_threads=2)
        await crew.start()
        never = gorun.Chan[int]()
        seen: Counter[str] = Counter()
        for r in range(ROUNDS):
            cap = rng.choice((0, 0, 1, 4))
            op = rng.choice(("send", "recv"))
            how = rng.randrange(3)
            modes = [rng.randrange(4) for _ in range(crew.size)]
            ch = gorun.Chan[int](cap)
            pre = list(range(-cap, 0)) if op == "send" else []
            for v in pre:
                ch.send_nowait(v)  # full: every sender parks
            crew.dispatch(
                [functools.partial(_parked_op, ch, never, op, i, modes[i])
                 for i in crew.async_members]
                + [functools.partial(_parked_op_blocking, ch, op, i)
                   for i in crew.blocking_members]
            )
            await until(
                functools.partial(_all_parked, ch, op, crew.size),
                functools.partial(_describe, ch, f"round {r}: {crew.size} {op}s parked"),
            )
            await close_from(ch, how)
            results = await crew.collect()
            assert results == ["closed"] * crew.size, (r, op, cap, how, results)
            assert drain(ch) == pre, (r, ch)
            assert parked(ch) == (0, 0), (r, ch)
            assert parked(never) == (0, 0), (r, never)
            seen[f"{op} closed from {('main', 'goroutine', 'thread')[how]}"] += 1
        await crew.stop()
        return seen

    run_bounded(main, seed=seed, limit=150.0, what="close with every operation parked")


# -- close racing live traffic ------------------------------------------------------------------


async def _send_until_closed(
    ch: gorun.Chan[int], never: gorun.Chan[int], base: int, rng: random.Random, sent: list[int]
) -> int:
    """Send base + 0, 1, 2, ... until the channel is closed; return how many were sent."""
    n = 0
    while True:
        try:
            if rng.randrange(3):
                await ch.send(base + n)
            else:
                await gorun.select((ch.send, base + n), never.recv)
        except gorun.Closed:
            return n
        sent.append(n)
        n += 1


async def _recv_until_closed(
    ch: gorun.Chan[int], never: gorun.Chan[int], rng: random.Random
) -> list[int]:
    out: list[int] = []
    if rng.randrange(4) == 0:
        async for value in ch:
            out.append(value)
        return out
    while True:
        mode = rng.randrange(3)
        if mode == 0:
            try:
                out.append(await ch.recv())
            except gorun.Closed:
                return out
            continue
        if mode == 1:
            v, ok = await ch.recv_ok()
        else:
            _, (v, ok) = await gorun.select(never.recv_ok, ch.recv_ok)
        if not ok:
            return out
        assert v is not None
        out.append(v)


def _send_until_closed_blocking(ch: gorun.Chan[int], base: int, sent: list[int]) -> int:
    n = 0
    while True:
        try:
            ch.send_blocking(base + n, timeout=STEP_TIMEOUT)
        except gorun.Closed:
            return n
        sent.append(n)
        n += 1


def _recv_until_closed_blocking(ch: gorun.Chan[int]) -> list[int]:
    out = []
    while True:
        try:
            out.append(ch.recv_blocking(timeout=STEP_TIMEOUT))
        except gorun.Closed:
            return out


def check_in_order(values: list[int], what: str) -> None:
    """Each sender's values arrive at one receiver in the order they were sent."""
    last: dict[int, int] = {}
    for v in values:
        sender = v // STRIDE
        assert last.get(sender, -1) < v, f"{what}: {v} after {last[sender]}"
        last[sender] = v


def test_stress_close_races_senders_and_receivers(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> Counter[str]:
        crew = Crew(blocking_threads=2)
        await crew.start()
        never = gorun.Chan[int]()
        seen: Counter[str] = Counter()
        for r in range(ROUNDS):
            cap = rng.choice((0, 0, 1, 3, 16))
            take = rng.randrange(4)  # values the main goroutine receives itself
            goal = rng.randrange(60)  # values sent (by anyone) before the close
            how = rng.randrange(3)
            sends = [rng.randrange(2) == 0 for _ in range(crew.size)]
            roles = rng.sample(range(crew.size), 2)
            sends[roles[0]], sends[roles[1]] = True, False  # at least one of each
            rngs = [random.Random(rng.getrandbits(64)) for _ in range(crew.size)]
            ch = gorun.Chan[int](cap)
            progress: list[int] = []  # one entry per value sent

            jobs: list[Any] = [
                functools.partial(
                    _send_until_closed, ch, never, (i + 1) * STRIDE, rngs[i], progress
                )
                if sends[i]
                else functools.partial(_recv_until_closed, ch, never, rngs[i])
                for i in crew.async_members
            ]
            jobs += [
                functools.partial(_send_until_closed_blocking, ch, (i + 1) * STRIDE, progress)
                if sends[i]
                else functools.partial(_recv_until_closed_blocking, ch)
                for i in crew.blocking_members
            ]
            crew.dispatch(jobs)
            mine = [await ch.recv() for _ in range(take)]
            await until(
                functools.partial(_reached, progress, goal),
                functools.partial(
                    _describe, ch, f"round {r}: {goal} values sent (senders: {sends})"
                ),
            )
            await close_from(ch, how)
            results = await crew.collect()
            assert not [x for x in results if isinstance(x, BaseException)], (r, results)
            sent: Counter[int] = Counter()
            received: Counter[int] = Counter(mine)
            check_in_order(mine, f"round {r}: main")
            for i, result in enumerate(results):
                if sends[i]:
                    assert isinstance(result, int)
                    sent.update(range((i + 1) * STRIDE, (i + 1) * STRIDE + result))
                else:
                    assert isinstance(result, list)
                    check_in_order(result, f"round {r}: member {i}")
                    received.update(result)
            left = drain(ch)
            check_in_order(left, f"round {r}: drained")
            received.update(left)
            lost = sorted((sent - received).elements())
            extra = sorted((received - sent).elements())
            assert not lost, f"round {r} (cap {cap}): sent, never received: {lost[:10]}"
            assert not extra, f"round {r} (cap {cap}): received, never sent: {extra[:10]}"
            assert parked(ch) == (0, 0), (r, ch)
            assert parked(never) == (0, 0), (r, never)
            seen["values"] += sum(sent.values())
            seen["left in the buffer"] += len(left)
        await crew.stop()
        return seen

    run_bounded(main, seed=seed, limit=150.0, what="close racing traffic")
