"""select: ready cases, default, closed channels, fairness, bad cases, and atomicity when
selects on several workers race for the same values.

As in ``test_chan``, goroutines are forced onto distinct workers by blocking their
threads on a barrier (``support.pinner``), and ``until_parked`` yields until a select
has queued its waiters. The races between selects on several workers are
``support.race_two_selects`` and ``support.race_counterparties``, also driven at scale
by ``test_chan_stress``.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import gorun
import gorun._select
from tests.support import (
    PROCS,
    TIMEOUT,
    empty,
    outcome,
    parked,
    pinner,
    race_counterparties,
    race_two_selects,
    until_parked,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_never_awaited")]


def no_receiver(ch: gorun.Chan[Any]) -> bool:
    """True if an unbuffered *ch* has no receiver waiting (send_nowait would block)."""
    try:
        ch.send_nowait(0)
    except gorun.WouldBlock:
        return True
    return False


# -- ready cases ----------------------------------------------------------------------------


def test_a_ready_case_runs_at_once() -> None:
    async def main() -> list[Any]:
        a = gorun.Chan[int](1)
        b = gorun.Chan[str](1)
        out = gorun.Chan[int](1)
        a.send_nowait(1)
        results: list[Any] = [await gorun.select(b.recv, a.recv)]
        a.send_nowait(2)
        results.append(await gorun.select(b.recv_ok, a.recv_ok))
        results.append(await gorun.select(b.recv, (out.send, 3)))
        results.append(out.recv_nowait())
        return results

    assert gorun.run(main(), procs=1) == [(1, 1), (1, (2, True)), (1, None), 3]


def test_only_the_chosen_case_takes_effect() -> None:
    async def main() -> None:
        for _ in range(50):
            a = gorun.Chan[int](1)
            b = gorun.Chan[int](1)
            a.send_nowait(1)
            b.send_nowait(2)
            index, value = await gorun.select(a.recv, b.recv)
            assert value == (1, 2)[index]
            assert (len(a), len(b)) == ((0, 1) if index == 0 else (1, 0))
            c = gorun.Chan[int](1)
            d = gorun.Chan[int](1)
            index, value = await gorun.select((c.send, 3), (d.send, 4))
            assert value is None
            assert (len(c), len(d)) == ((1, 0) if index == 0 else (0, 1))
            e = gorun.Chan[int](1)
            e.send_nowait(5)
            f = gorun.Chan[int](1)
            index, value = await gorun.select(e.recv, (f.send, 6))
            assert [len(e), len(f)] == ([0, 0] if index == 0 else [1, 1])

    gorun.run(main(), procs=1)


def test_send_case_hands_over_to_a_parked_receiver_on_another_worker() -> None:
    pin = pinner(2)

    async def main() -> tuple[Any, Any, bool]:
        ch = gorun.Chan[int]()
        other = gorun.Chan[int]()

        async def receiver() -> tuple[int, int]:
            return pin(), await ch.recv()

        g = gorun.go(receiver())
        here = pin()
        await until_parked(ch, receivers=1)
        chosen = await gorun.select(other.recv, (ch.send, 11))
        ident, got = await g
        return chosen, got, ident != here

    assert gorun.run(main(), procs=PROCS) == ((1, None), 11, True)


def test_recv_case_takes_from_a_parked_sender_and_buffered_slot_refills() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int](1)
        ch.send_nowait(1)
        g = gorun.go(ch.send(2))
        await until_parked(ch, senders=1)
        first = await gorun.select(ch.recv)
        await g
        return [first, len(ch), ch.recv_nowait()]

    assert gorun.run(main(), procs=PROCS) == [(0, 1), 1, 2]


def test_the_same_channel_in_two_cases_does_not_meet_itself() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        out: list[Any] = [await gorun.select(ch.recv, (ch.send, 1), default=True)]
        g = gorun.go(gorun.select(ch.recv, (ch.send, 1)))
        await until_parked(ch, senders=1, receivers=1)
        await ch.send(7)  # meets its receive case
        out.append(await g)
        assert parked(ch) == (0, 0)  # its send case left with it
        h = gorun.go(gorun.select(ch.recv, (ch.send, 2)))
        await until_parked(ch, senders=1, receivers=1)
        out.append(await ch.recv())  # meets its send case
        out.append(await h)
        return out

    assert gorun.run(main(), procs=2) == [(-1, None), (0, 7), 2, (1, None)]


def test_two_selects_on_one_channel_meet_each_other() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int]()
        g = gorun.go(gorun.select(ch.recv, (ch.send, 1)))
        await until_parked(ch, senders=1, receivers=1)
        mine = await gorun.select(ch.recv, (ch.send, 2))
        theirs = await g
        return sorted([mine, theirs])

    assert gorun.run(main(), procs=2) in ([(0, 1), (1, None)], [(0, 2), (1, None)])


# -- default ---------------------------------------------------------------------------------


def test_default_returns_at_once_and_leaves_no_trace() -> None:
    async def main() -> list[Any]:
        a = gorun.Chan[int]()
        b = gorun.Chan[int](1)
        b.send_nowait(0)  # full: a send case on b is not ready
        out: list[Any] = [
            await gorun.select(a.recv, a.recv_ok, (b.send, 1), (a.send, 2), default=True)
        ]
        out.append([parked(a), parked(b), len(b), b.recv_nowait(), no_receiver(a)])
        out.append(await gorun.select(default=True))
        b.send_nowait(3)
        out.append(await gorun.select(a.recv, b.recv, default=True))  # a ready case wins
        return out

    assert gorun.run(main(), procs=1) == [
        (-1, None),
        [(0, 0), (0, 0), 1, 0, True],
        (-1, None),
        (1, 3),
    ]


# -- closed channels --------------------------------------------------------------------------


def test_closed_channels_in_cases() -> None:
    async def main() -> list[Any]:
        ch = gorun.Chan[int](1)
        ch.send_nowait(5)
        ch.close()
        never = gorun.Chan[int]()
        return [
            await gorun.select(never.recv, ch.recv),  # buffered value still delivered
            await outcome(gorun.select(never.recv, ch.recv)),
            await gorun.select(never.recv, ch.recv_ok),
            await outcome(gorun.select((ch.send, 1), never.recv)),
            await outcome(gorun.select(ch.recv, default=True)),
            await gorun.select(ch.recv_ok, default=True),
        ]

    assert gorun.run(main(), procs=1) == [
        (1, 5),
        gorun.Closed,
        (1, (None, False)),
        gorun.Closed,
        gorun.Closed,
        (0, (None, False)),
    ]


def test_closing_done_wakes_every_select_on_every_worker() -> None:
    n = 8
    pin = pinner(PROCS)

    async def main() -> tuple[list[Any], set[int], Any]:
        done = gorun.Chan[None]()
        work = [gorun.Chan[int]() for _ in range(n)]

        async def watcher(k: int) -> tuple[int, Any]:
            ident = pin() if k < PROCS else 0
            return ident, await gorun.select(work[k].recv, done.recv_ok, (work[k].send, k))

        async def plain_recv() -> Any:
            return await outcome(gorun.select(gorun.Chan[int]().recv_ok, done.recv))

        gs = [gorun.go(watcher(k)) for k in range(n)]
        extra = gorun.go(plain_recv())
        await until_parked(done, receivers=n + 1)
        done.close()
        results = [await g for g in gs]
        assert all(no_receiver(ch) and empty(ch) for ch in work)  # no trace left
        return [r for _, r in results], {i for i, _ in results if i}, await extra

    results, idents, extra = gorun.run(main(), procs=PROCS)
    assert results == [(1, (None, False))] * n
    assert len(idents) == PROCS
    assert extra is gorun.Closed


def test_close_wakes_a_parked_select_with_a_send_case() -> None:
    async def main() -> Any:
        ch = gorun.Chan[int]()
        other = gorun.Chan[int]()
        g = gorun.go(outcome(gorun.select((ch.send, 1), other.recv)))
        await until_parked(ch, senders=1)
        ch.close()
        result = await g
        assert no_receiver(other)
        return result

    assert gorun.run(main(), procs=PROCS) is gorun.Closed


# -- bad calls --------------------------------------------------------------------------------


class NotAChan:
    async def recv(self) -> int:
        return 0

    async def send(self, value: int) -> None:
        pass


@pytest.mark.parametrize(
    "make_cases",
    [
        lambda ch: [ch.send],  # a send case needs its value
        lambda ch: [(ch.recv, 1)],  # a receive case takes none
        lambda ch: [(ch.recv_ok, 1)],
        lambda ch: [(ch.send,)],
        lambda ch: [(ch.send, 1, 2)],
        lambda ch: [42],
        lambda ch: [None],
        lambda ch: [ch],
        lambda ch: [ch.close],
        lambda ch: [ch.recv_nowait],
        lambda ch: [(ch.send_nowait, 1)],
        lambda ch: [NotAChan().recv],
        lambda ch: [(NotAChan().send, 1)],
        lambda ch: [ch.recv, "recv"],
    ],
)
def test_bad_cases_raise_type_error(make_cases: Callable[[gorun.Chan[int]], list[Any]]) -> None:
    async def main() -> None:
        ch = gorun.Chan[int](1)
        ch.send_nowait(1)  # a valid case beside a bad one must not run
        with pytest.raises(TypeError):
            await gorun.select(*make_cases(ch))
        with pytest.raises(TypeError):
            await gorun.select(*make_cases(ch), default=True)
        assert len(ch) == 1

    gorun.run(main(), procs=1)


def test_a_called_operation_is_a_bad_case() -> None:
    async def main() -> None:
        ch = gorun.Chan[int]()
        coro = ch.recv()
        try:
            with pytest.raises(TypeError):
                await gorun.select(coro)
        finally:
            coro.close()

    gorun.run(main(), procs=1)


def test_no_cases_and_no_default_is_a_value_error() -> None:
    async def main() -> tuple[int, Any]:
        with pytest.raises(ValueError, match="select"):
            await gorun.select()
        return await gorun.select(default=True)

    assert gorun.run(main(), procs=1) == (-1, None)


# -- fairness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [None, 12345])
def test_ready_cases_are_chosen_uniformly(seed: int | None) -> None:
    rounds = 2000

    async def main() -> Counter[int]:
        if seed is not None:
            gorun._select._random.seed(seed)
        a = gorun.Chan[int](1)
        b = gorun.Chan[int](1)
        a.send_nowait(0)
        b.send_nowait(1)
        chosen: Counter[int] = Counter()
        for _ in range(rounds):
            index, value = await gorun.select(a.recv, b.recv)
            assert index == value
            chosen[index] += 1
            (a, b)[index].send_nowait(index)
        return chosen

    chosen = gorun.run(main(), procs=1)
    for index in (0, 1):
        assert 0.35 * rounds <= chosen[index] <= 0.65 * rounds, chosen


def test_ready_send_and_recv_cases_are_chosen_uniformly() -> None:
    rounds = 3000

    async def main() -> Counter[int]:
        gorun._select._random.seed(2024)
        src = gorun.Chan[int](1)
        dst = gorun.Chan[int](1)
        ok = gorun.Chan[int](1)
        chosen: Counter[int] = Counter()
        for _ in range(rounds):
            src.send_nowait(0)
            ok.send_nowait(2)
            index, _ = await gorun.select(src.recv, (dst.send, 1), ok.recv_ok)
            chosen[index] += 1
            for ch in (src, dst, ok):  # empty them again
                if len(ch):
                    ch.recv_nowait()
        return chosen

    chosen = gorun.run(main(), procs=1)
    for index in (0, 1, 2):
        assert 0.23 * rounds <= chosen[index] <= 0.43 * rounds, chosen


# -- atomicity across workers ------------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, 1])
def test_two_selects_on_two_workers_race_for_one_value(cap: int) -> None:
    race_two_selects(200, cap)


def test_select_with_send_and_recv_cases_raced_by_both_counterparties() -> None:
    race_counterparties(200)


def test_many_selects_share_values_exactly_once() -> None:
    # Selects on every worker drain two channels fed by goroutines and a plain thread;
    # every value arrives exactly once.
    per_feeder = 300
    pin = pinner(PROCS)

    async def main() -> list[int]:
        a = gorun.Chan[int]()
        b = gorun.Chan[int](3)
        done = gorun.Chan[None]()

        async def drain() -> list[int]:
            pin()
            got: list[int] = []
            while True:
                index, value = await gorun.select(a.recv, b.recv, done.recv_ok)
                if index == 2:
                    # Done: take what is left without waiting.
                    while True:
                        index, value = await gorun.select(a.recv, b.recv, default=True)
                        if index < 0:
                            return got
                        got.append(value)
                got.append(value)

        async def feed(ch: gorun.Chan[int], base: int) -> None:
            for i in range(per_feeder):
                await ch.send(base + i)

        def feed_blocking() -> None:
            for i in range(per_feeder):
                a.send_blocking(2000 + i)

        drains = [gorun.go(drain()) for _ in range(PROCS)]
        feeders = [gorun.go(feed(a, 0)), gorun.go(feed(b, 1000))]
        t = threading.Thread(target=feed_blocking)
        t.start()
        for f in feeders:
            await f
        await asyncio.to_thread(t.join, TIMEOUT)
        done.close()
        got: list[int] = []
        for g in drains:
            got.extend(await g)
        return sorted(got)

    expected = sorted(
        [*range(per_feeder), *range(1000, 1000 + per_feeder), *range(2000, 2000 + per_feeder)]
    )
    assert gorun.run(main(), procs=PROCS) == expected


# -- cancellation -------------------------------------------------------------------------------


def test_a_cancelled_select_leaves_no_trace() -> None:
    pin = pinner(2)

    async def main() -> list[Any]:
        a = gorun.Chan[int]()
        b = gorun.Chan[int](1)
        b.send_nowait(0)  # full

        async def waiter() -> Any:
            pin()
            return await gorun.select(a.recv, (b.send, 1), a.recv_ok)

        g = gorun.go(waiter())
        pin()
        await until_parked(a, receivers=2)
        g.cancel()
        out = [await outcome(g), parked(a), parked(b), no_receiver(a), b.recv_nowait(), empty(b)]
        return out

    assert gorun.run(main(), procs=PROCS) == [
        asyncio.CancelledError,
        (0, 0),
        (0, 0),
        True,
        0,
        True,
    ]


def test_select_cancelled_as_a_case_wins() -> None:
    # Cancel and hand-off in one callback on the select's own loop: the hand-off claims
    # the select before its task sees the cancellation. A received value goes back to
    # its channel and the select raises; a sent value cannot be taken back, so the
    # select returns its case and the cancellation comes at the next await.
    async def main() -> list[Any]:
        a = gorun.Chan[int]()
        b = gorun.Chan[int]()
        log: list[Any] = []

        async def selector() -> None:
            try:
                log.append(await gorun.select(a.recv, (b.send, 8), a.recv_ok))
            except asyncio.CancelledError as exc:
                log.append(("select raised", exc.args))
                raise
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as exc:
                log.append(("next await raised", exc.args))
                raise

        for take in ("recv", "send"):
            task = asyncio.create_task(selector())
            await until_parked(a, receivers=2)
            if take == "recv":
                a.send_nowait(3)
            else:
                log.append(b.recv_nowait())
            task.cancel("now")
            log.append(await outcome(task))
            log.append((parked(a), parked(b)))
            if take == "recv":
                log.append(a.recv_nowait())  # the value put back
        return log

    assert gorun.run(main(), procs=1) == [
        ("select raised", ("now",)),
        asyncio.CancelledError,
        ((0, 0), (0, 0)),
        3,
        8,
        (1, None),
        ("next await raised", ("now",)),
        asyncio.CancelledError,
        ((0, 0), (0, 0)),
    ]


def test_select_cancelled_as_a_value_arrives_passes_it_to_the_next_receiver() -> None:
    async def main() -> list[Any]:
        a = gorun.Chan[int]()
        first = asyncio.create_task(gorun.select(a.recv, gorun.Chan[int]().recv))
        await until_parked(a, receivers=1)
        second = asyncio.create_task(a.recv())
        await until_parked(a, receivers=2)
        a.send_nowait(5)  # to the select
        first.cancel()
        return [await outcome(first), await second, parked(a), len(a)]

    assert gorun.run(main(), procs=1) == [asyncio.CancelledError, 5, (0, 0), 0]


def test_select_under_timeout_races_senders_on_other_workers(seed: int) -> None:
    # A select under a tiny timeout against two senders on other workers: it takes one
    # value or none, and whatever it did not take is still there (a value handed over
    # as the timeout fired went back to its channel).
    rounds = 150
    pin = pinner(3)
    Job = tuple[gorun.Chan[int], gorun.Chan[int], gorun.Chan[None]]

    async def main() -> Counter[str]:
        jobs = [gorun.Chan[Job | None](1) for _ in range(2)]
        results = gorun.Chan[tuple[int, Any]](2)

        async def sender(k: int) -> int:
            ident = pin()
            jitter = random.Random(seed + k)
            while (job := await jobs[k].recv()) is not None:
                done = job[2]
                ch = job[k]
                # Jitter, so that the timeout comes first in some rounds; the outcome is
                # checked either way.
                await asyncio.sleep(jitter.choice((0.0, 0.0, 1e-4, 1e-3)))
                await results.send((k, await gorun.select((ch.send, k), done.recv_ok)))
            return ident

        gs = [gorun.go(sender(0)), gorun.go(sender(1))]
        pin()
        seen: Counter[str] = Counter()
        for i in range(rounds):
            a, b, done = gorun.Chan[int](), gorun.Chan[int](), gorun.Chan[None]()
            for job in jobs:
                await job.send((a, b, done))
            taken: list[int] = []
            try:
                async with asyncio.timeout((0.0, 1e-5, 1e-4)[i % 3]):
                    taken.append((await gorun.select(a.recv, b.recv))[1])
            except TimeoutError:
                seen["timeout"] += 1
            await asyncio.sleep(0)  # a cancelled receive never re-raises later
            # Whatever was not taken is still offered: take it now.
            for ch, k in ((a, 0), (b, 1)):
                if k not in taken:
                    assert await ch.recv() == k
            done.close()
            got = dict([await results.recv(), await results.recv()])
            assert got == {0: (0, None), 1: (0, None)}, (i, taken, got)
            seen[f"took {len(taken)}"] += 1
        for job in jobs:
            await job.send(None)
        for g in gs:
            await g
        return seen

    seen = gorun.run(main(), procs=PROCS)
    assert seen["took 0"] + seen["took 1"] == rounds


def test_select_on_a_foreign_loop_with_a_plain_thread() -> None:
    ch = gorun.Chan[int]()
    stop = gorun.Chan[None]()

    def plain() -> None:
        for i in range(20):
            ch.send_blocking(i, timeout=TIMEOUT)
        stop.close()

    async def main() -> list[int]:
        t = threading.Thread(target=plain)
        t.start()
        got = []
        while True:
            index, value = await gorun.select(ch.recv, stop.recv_ok)
            if index == 1:
                break
            got.append(value)
        await asyncio.to_thread(t.join, TIMEOUT)
        return got

    assert asyncio.run(main()) == list(range(20))
