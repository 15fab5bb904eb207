"""Exact hand-offs under cancellation, randomized: an operation either took effect and
its caller sees it succeed, or it did not and the caller sees it give up; never both.

Senders and receivers on every worker and on plain threads pass unique values through
one channel. Every operation is wrapped in an idiom drawn at random: a plain await,
``asyncio.wait_for``, ``asyncio.timeout``, gorun's own ``timeout=``, a task or goroutine
cancelled by its owner (on its loop, or from a plain thread), a ``TaskGroup`` or
``gorun.Group`` aborted by a failing sibling. Whatever the idiom reports is the truth
the test holds it to: the values reported sent are exactly the values received, a task
whose owner cancelled it still stops, and no task dies of a cancellation nobody asked
it for (a stray cancellation would kill a sender or receiver at its next await, and the
test with it).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import gorun
from tests.support import PROCS

#: What an attempt returns when the operation reported that it did not happen.
GAVE_UP: Any = object()
#: Seconds before a timeout fires or a cancel is sent: around a hand-off's own time, so
#: that many of them land in the instant of one.
DELAYS = (0.0, 0.0, 1e-5, 5e-5, 2e-4, 1e-3)
#: How long a cancelled task may take to stop before the test calls it stuck.
STOP_BOUND = 10.0

IDIOMS = (
    "plain",
    "wait_for",
    "timeout",
    "direct",
    "task_cancel",
    "goroutine_cancel",
    "thread_cancel",
    "taskgroup_abort",
    "group_abort",
)


class Boom(Exception):
    """The sibling's failure that aborts a group."""


Op = Callable[[], Awaitable[Any]]
TimedOp = Callable[[float], Awaitable[Any]]


async def _owned(op: Op, done: list[Any]) -> None:
    # The operation in a task of its own, which its owner cancels: the result goes into
    # *done* at once, and then the task waits until the cancellation stops it.
    done.append(await op())
    await asyncio.Event().wait()


async def _settled(task: Awaitable[Any], done: list[Any], what: str) -> Any:
    # Wait for a cancelled owned task, which must stop (a bound, not a delay): its result
    # if the operation completed, else GAVE_UP.
    fut = asyncio.ensure_future(task)
    finished, _ = await asyncio.wait({fut}, timeout=STOP_BOUND)
    if not finished:
        raise AssertionError(f"{what}: a cancelled task did not stop")
    if not fut.cancelled():
        fut.result()  # Closed, or a bug: raise it
        raise AssertionError(f"{what}: a cancelled task ended without a cancellation")
    return done[0] if done else GAVE_UP


async def _cancel_from_thread(target: Any, delay: float) -> None:
    # Cancel *target* (a Task, through its loop, or a Goroutine, directly) from a
    # plain thread, after *delay*.
    loop = asyncio.get_running_loop()

    def fire() -> None:
        if isinstance(target, asyncio.Task):
            loop.call_soon_threadsafe(target.cancel)
        else:
            target.cancel()

    timer = threading.Timer(delay, fire)
    timer.start()


async def _aborted(op: Op, delay: float, group: str) -> Any:
    done: list[Any] = []

    async def sibling() -> None:
        await asyncio.sleep(delay)
        raise Boom

    try:
        if group == "taskgroup_abort":
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_owned(op, done))
                tg.create_task(sibling())
        else:
            async with gorun.Group() as g:
                g.go(_owned(op, done))
                g.go(sibling())
    except BaseExceptionGroup as eg:
        rest = eg.subgroup(lambda e: not isinstance(e, (Boom, BaseExceptionGroup)))
        if rest is not None:
            raise rest.exceptions[0] from eg  # Closed: the channel closed meanwhile
    return done[0] if done else GAVE_UP


async def attempt(idiom: str, op: Op, timed: TimedOp, rng: random.Random) -> Any:
    """Run one operation under *idiom*: its result, or GAVE_UP if the idiom reported
    that it did not happen. Closed propagates."""
    delay = rng.choice(DELAYS)
    if idiom == "plain":
        return await op()
    if idiom in ("wait_for", "timeout", "direct"):
        try:
            if idiom == "wait_for":
                return await asyncio.wait_for(op(), delay)
            if idiom == "direct":
                return await timed(delay)
            async with asyncio.timeout(delay):
                return await op()
        except TimeoutError:
            return GAVE_UP
    if idiom in ("taskgroup_abort", "group_abort"):
        return await _aborted(op, delay, idiom)
    done: list[Any] = []
    target: Any
    if idiom == "goroutine_cancel":
        target = gorun.go(_owned(op, done), local=rng.random() < 0.5)
    else:
        target = asyncio.ensure_future(_owned(op, done))
    if idiom == "thread_cancel":
        await _cancel_from_thread(target, delay)
    else:
        asyncio.get_running_loop().call_later(delay, target.cancel)
    return await _settled(target, done, idiom)


class Run:
    """One randomized run: its channel, what was reported sent and received."""

    def __init__(self, cap: int, seed: int) -> None:
        self.ch: gorun.Chan[int] = gorun.Chan(cap)
        self.never: gorun.Chan[int] = gorun.Chan()  # a select's other case, never ready
        self.seeds = random.Random(seed)
        self.sent: list[int] = []
        self.received: list[int] = []
        self.idioms: Counter[str] = Counter()

    def rng(self) -> random.Random:
        return random.Random(self.seeds.getrandbits(64))

    def send_ops(self, v: int, rng: random.Random) -> tuple[Op, TimedOp]:
        ch, never = self.ch, self.never
        if rng.random() < 0.5:
            return (lambda: ch.send(v)), (lambda t: ch.send(v, timeout=t))

        async def select_send() -> None:
            await gorun.select((ch.send, v), never.recv)

        async def select_send_timed(t: float) -> None:
            index, _ = await gorun.select((ch.send, v), gorun.after(t).recv)
            if index == 1:
                raise TimeoutError

        return select_send, select_send_timed

    def recv_ops(self, rng: random.Random) -> tuple[Op, TimedOp]:
        ch, never = self.ch, self.never
        kind = rng.randrange(3)
        if kind == 0:
            return ch.recv, (lambda t: ch.recv(timeout=t))
        if kind == 1:

            async def recv_ok(t: float | None = None) -> int:
                v, ok = await (ch.recv_ok() if t is None else ch.recv_ok(timeout=t))
                if not ok:
                    raise gorun.Closed
                return v  # type: ignore[return-value]

            return recv_ok, recv_ok

        async def select_recv() -> int:
            _, v = await gorun.select(never.recv, ch.recv)
            return v  # type: ignore[no-any-return]

        async def select_recv_timed(t: float) -> int:
            index, v = await gorun.select(ch.recv, gorun.after(t).recv)
            if index == 1:
                raise TimeoutError
            return v  # type: ignore[no-any-return]

        return select_recv, select_recv_timed

    async def sender(self, values: range, rng: random.Random) -> None:
        for v in values:
            idiom = rng.choice(IDIOMS)
            self.idioms[idiom] += 1
            op, timed = self.send_ops(v, rng)
            if await attempt(idiom, op, timed, rng) is not GAVE_UP:
                self.sent.append(v)
            await asyncio.sleep(0)  # a stray cancellation would land here

    async def receiver(self, rng: random.Random) -> None:
        while True:
            idiom = rng.choice(IDIOMS)
            op, timed = self.recv_ops(rng)
            try:
                got = await attempt(idiom, op, timed, rng)
            except gorun.Closed:
                return
            if got is not GAVE_UP:
                self.received.append(got)
            await asyncio.sleep(0)  # a stray cancellation would land here

    def thread_sender(self, values: range, rng: random.Random) -> None:
        for v in values:
            try:
                self.ch.send_blocking(v, timeout=rng.choice((None, *DELAYS)))
            except TimeoutError:
                continue
            self.sent.append(v)

    def thread_receiver(self, rng: random.Random) -> None:
        while True:
            try:
                self.received.append(self.ch.recv_blocking(timeout=rng.choice((None, *DELAYS))))
            except TimeoutError:
                continue
            except gorun.Closed:
                return


def _run(cap: int, seed: int, per_sender: int, goroutines: int) -> Run:
    run = Run(cap, seed)
    stride = 1 << 20

    async def main() -> None:
        senders = [
            gorun.go(run.sender(range(k * stride, k * stride + per_sender), run.rng()))
            for k in range(goroutines)
        ]
        receivers = [gorun.go(run.receiver(run.rng())) for _ in range(goroutines)]
        k = goroutines
        tx = threading.Thread(
            target=run.thread_sender, args=(range(k * stride, k * stride + per_sender), run.rng())
        )
        rx = threading.Thread(target=run.thread_receiver, args=(run.rng(),))
        tx.start()
        rx.start()
        for g in senders:
            await g  # a sender killed by a stray cancellation fails the test here
        await asyncio.to_thread(tx.join)
        run.ch.close()
        for g in receivers:
            await g
        await asyncio.to_thread(rx.join)

    gorun.run(main(), procs=PROCS)
    return run


@pytest.mark.parametrize("cap", [0, 2])
def test_values_reported_sent_are_exactly_the_values_received(cap: int, seed: int) -> None:
    _check_run(_run(cap, seed, per_sender=60, goroutines=8), seed)


@pytest.mark.stress
@pytest.mark.parametrize("cap", [0, 1, 8])
def test_values_reported_sent_are_exactly_the_values_received_at_scale(
    cap: int, seed: int
) -> None:
    _check_run(_run(cap, seed, per_sender=300, goroutines=24), seed)


def _check_run(run: Run, seed: int) -> None:
    sent, received = Counter(run.sent), Counter(run.received)
    print(f"sent {len(run.sent)}, received {len(run.received)}, idioms {dict(run.idioms)}")
    lost = sorted((sent - received).elements())
    extra = sorted((received - sent).elements())
    assert not lost, f"seed={seed}: reported sent, never received: {lost[:10]}"
    assert not extra, f"seed={seed}: received, but reported not sent: {extra[:10]}"
    assert len(run.sent) > 0


# -- locks: an acquisition either holds the lock or raises ----------------------------------------


class Holders:
    """Who holds a lock now, checked on every change: never a writer with anyone else."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.readers = 0
        self.writers = 0
        self.acquired = 0

    def enter(self, write: bool) -> None:
        with self._lock:
            if write:
                self.writers += 1
            else:
                self.readers += 1
            self.acquired += 1
            held = f"{self.writers} writer(s) and {self.readers} reader(s) hold the lock"
            assert self.writers <= 1, held
            assert not (self.writers and self.readers), held

    def leave(self, write: bool) -> None:
        with self._lock:
            if write:
                self.writers -= 1
            else:
                self.readers -= 1


async def _locker(
    lock: gorun.Mutex | gorun.RWMutex, holders: Holders, rounds: int, rng: random.Random
) -> None:
    # An acquisition reported as failed must not hold the lock (or the next one waits
    # forever, which the deadlock check or the test's timeout reports); one reported as
    # done must hold it exclusively.
    for _ in range(rounds):
        write = isinstance(lock, gorun.Mutex) or rng.random() < 0.5
        acquire = lock.lock if write else lock.rlock  # type: ignore[union-attr]

        async def timed(t: float, acquire: Op = acquire) -> None:
            await asyncio.wait_for(acquire(), t)

        if await attempt(rng.choice(IDIOMS), acquire, timed, rng) is GAVE_UP:
            continue
        holders.enter(write)
        await asyncio.sleep(0)
        holders.leave(write)
        if write:
            lock.unlock()
        else:
            lock.runlock()  # type: ignore[union-attr]
        await asyncio.sleep(0)  # a stray cancellation would land here


@pytest.mark.parametrize("kind", ["Mutex", "RWMutex"])
def test_a_lock_acquisition_either_holds_the_lock_or_raises(kind: str, seed: int) -> None:
    seeds = random.Random(seed)
    holders = Holders()

    async def main() -> bool:
        lock: gorun.Mutex | gorun.RWMutex = getattr(gorun, kind)()
        lockers = [
            gorun.go(_locker(lock, holders, 40, random.Random(seeds.getrandbits(64))))
            for _ in range(8)
        ]
        for g in lockers:
            await g
        return lock.locked()

    assert gorun.run(main(), procs=PROCS) is False
    print(f"acquired {holders.acquired} times")
    assert holders.acquired > 0
