"""Select over four channels, a sender feeding one of them.

One operation is one wait on four channels that returns the value one sender sent on
the first of them. gorun has ``select``; asyncio's idiom is ``asyncio.wait`` with
``FIRST_COMPLETED`` over one ``get()`` task per queue; trio's is a nursery with one
receiving task per channel, the first to receive cancelling the others. Each peer checks
that the values arrive in order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import gorun

from ._harness import Case, Target

CHANNELS = 4


def _check(i: int, value: int) -> None:
    if value != i:
        raise AssertionError(f"select received {value}, expected {i}")


def asyncio_wait_fresh(n: int) -> float:
    """Four new ``get()`` tasks per wait; the three that lose are cancelled."""

    async def main() -> float:
        queues: list[asyncio.Queue[int]] = [asyncio.Queue(1) for _ in range(CHANNELS)]

        async def send() -> None:
            for i in range(n):
                await queues[0].put(i)

        sender = asyncio.create_task(send())
        start = time.perf_counter()
        for i in range(n):
            gets = [asyncio.create_task(q.get()) for q in queues]
            done, pending = await asyncio.wait(gets, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            _check(i, done.pop().result())
        elapsed = time.perf_counter() - start
        await sender
        return elapsed

    return asyncio.run(main())


def asyncio_wait_kept(n: int) -> float:
    """One ``get()`` task per queue, kept waiting across waits; only the winner is renewed."""

    async def main() -> float:
        queues: list[asyncio.Queue[int]] = [asyncio.Queue(1) for _ in range(CHANNELS)]

        async def send() -> None:
            for i in range(n):
                await queues[0].put(i)

        sender = asyncio.create_task(send())
        gets: dict[asyncio.Task[int], int] = {
            asyncio.create_task(q.get()): k for k, q in enumerate(queues)
        }
        start = time.perf_counter()
        for i in range(n):
            done, _ = await asyncio.wait(gets, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                k = gets.pop(t)
                _check(i, t.result())
                gets[asyncio.create_task(queues[k].get())] = k
        elapsed = time.perf_counter() - start
        for t in gets:
            t.cancel()
        await sender
        return elapsed

    return asyncio.run(main())


async def _trio_receive(rx: Any, got: list[int], scope: Any) -> None:
    got.append(await rx.receive())
    scope.cancel()


def trio_nursery_race(n: int) -> float:
    """A nursery of four receiving tasks per wait; the first to receive cancels the rest."""
    import trio

    async def main() -> float:
        channels = [trio.open_memory_channel[int](0) for _ in range(CHANNELS)]

        async def send() -> None:
            for i in range(n):
                await channels[0][0].send(i)

        elapsed = 0.0
        async with trio.open_nursery() as outer:
            outer.start_soon(send)
            start = time.perf_counter()
            for i in range(n):
                got: list[int] = []
                async with trio.open_nursery() as race:
                    for _, rx in channels:
                        race.start_soon(_trio_receive, rx, got, race.cancel_scope)
                _check(i, got[0])
            elapsed = time.perf_counter() - start
        return elapsed

    return trio.run(main)


async def _gorun_select(n: int, *, local: bool) -> float:
    chans: list[gorun.Chan[int]] = [gorun.Chan() for _ in range(CHANNELS)]

    async def send() -> None:
        for i in range(n):
            await chans[0].send(i)

    sender: Any = gorun.go(send(), local=local)
    cases = [c.recv for c in chans]
    start = time.perf_counter()
    for i in range(n):
        _, value = await gorun.select(*cases)
        _check(i, value)
    elapsed = time.perf_counter() - start
    await sender
    return elapsed


def gorun_select_local(n: int) -> float:
    """``gorun.select``, the sender started with ``go(local=True)`` (procs=2)."""
    return gorun.run(_gorun_select(n, local=True), procs=2)


def gorun_select_default(n: int) -> float:
    """``gorun.select``, the sender started with ``go()`` (procs=2)."""
    return gorun.run(_gorun_select(n, local=False), procs=2)


def cases() -> list[Case]:
    """The select case."""
    base = "asyncio.wait, 4 new get() tasks per wait"
    return [
        Case(
            name="select-4",
            description=f"wait on {CHANNELS} channels, one sender feeding the first",
            unit="select",
            baseline=base,
            peers={
                base: asyncio_wait_fresh,
                "asyncio.wait, get() tasks kept across waits": asyncio_wait_kept,
                "trio nursery race, 4 receive tasks": trio_nursery_race,
                "gorun.select, sender go(local=True)": gorun_select_local,
                "gorun.select, sender go() (procs=2)": gorun_select_default,
            },
            ops=10_000,
            quick_ops=2_000,
            targets=[
                Target("gorun.select, sender go(local=True)", base, 1.0),
                Target("gorun.select, sender go(local=True)",
                       "asyncio.wait, get() tasks kept across waits", 1.0),
                Target("gorun.select, sender go() (procs=2)", base, 1.0),
            ],
        )
    ]
