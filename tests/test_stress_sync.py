"""Stress: WaitGroup, Mutex, RWMutex and Once under contention across workers and threads.

Round after round, members on every worker, on foreign asyncio loops in plain threads,
and (where the primitive has a non-async API) on plain threads without a loop all use
one primitive at once, some of them giving up at random (tiny timeouts, so a
cancellation races the grant):

* Mutex: a counter incremented with await points inside the critical section (a
  read-modify-write that any overlap would corrupt): the final count is exact, and
  nobody ever finds someone else inside.
* RWMutex: readers and writers checked by counters: never a writer with anyone else
  inside, readers see the value unchanged across their own await points, and the
  writers' increments are all there.
* WaitGroup: waiters (goroutines, foreign loops, ``wait_blocking`` threads) wake only
  once every ``done()`` has been called, including those of goroutines started by
  ``WaitGroup.go`` while others already wait.
* Once: the function runs exactly once per round, whoever calls first; the other
  callers return only once it has finished (or failed).

Run with ``pytest -m stress``; the opt-in and the ``seed`` (``GORUN_STRESS_SEED``) are
in ``conftest.py``, the harness in ``support.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

import gorun
from tests.support import TINY, Crew, run_bounded

pytestmark = [pytest.mark.stress, pytest.mark.timeout(600)]


async def _nothing() -> None:
    pass


async def pause(rng: random.Random) -> None:
    """A random number of await points: yields to the loop, and now and then a round
    trip to a goroutine that may run on another worker."""
    for _ in range(rng.randrange(3)):
        await asyncio.sleep(0)
    if rng.randrange(8) == 0:
        await gorun.go(_nothing())


async def acquire(lock: Any, try_lock: Any, rng: random.Random) -> bool:
    """Take a lock in one of three ways: wait for it, wait under a tiny timeout, or try
    once. True if the caller now holds it."""
    mode = rng.randrange(6)
    if mode == 0:
        try:
            async with asyncio.timeout(rng.choice(TINY)):
                await lock()
        except TimeoutError:
            return False  # gave up, and holds nothing
        return True
    if mode == 1:
        if try_lock():
            return True
        await asyncio.sleep(0)
        return False
    await lock()
    return True


# -- Mutex ---------------------------------------------------------------------------------------

LOCK_ROUNDS = 1_500
OPS = 5  # lock attempts per member per round


@dataclasses.dataclass
class Counted:
    count: int = 0
    owner: int | None = None  # the member inside the critical section


async def _increment(mu: gorun.Mutex, state: Counted, me: int, rng: random.Random) -> int:
    done = 0
    for _ in range(OPS):
        if not await acquire(mu.lock, mu.try_lock, rng):
            continue
        try:
            assert state.owner is None, f"member {me} locked a Mutex member {state.owner} holds"
            state.owner = me
            value = state.count
            await pause(rng)
            assert state.owner == me, f"member {state.owner} got in while member {me} held it"
            state.count = value + 1
            state.owner = None
        finally:
            mu.unlock()
        done += 1
    return done


def _increment_blocking(mu: gorun.Mutex, state: Counted, me: int) -> int:
    done = 0
    for _ in range(OPS):
        if not mu.try_lock():
            continue
        try:
            assert state.owner is None, f"thread {me} locked a Mutex member {state.owner} holds"
            state.owner = me
            value = state.count
            time.sleep(0)  # let the other threads run
            assert state.owner == me
            state.count = value + 1
            state.owner = None
        finally:
            mu.unlock()
        done += 1
    return done


def live_waiters(queue: Any) -> int:
    return sum(not w.stale for w in queue)


def test_stress_mutex_counter_is_exact(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> dict[str, int]:
        crew = Crew(per_worker=3, blocking_threads=1)
        await crew.start()
        mu = gorun.Mutex()
        state = Counted()
        total = 0
        for _ in range(LOCK_ROUNDS):
            rngs = [random.Random(rng.getrandbits(64)) for _ in range(crew.size)]
            results = await crew.round(
                [functools.partial(_increment, mu, state, i, rngs[i]) for i in crew.async_members]
                + [functools.partial(_increment_blocking, mu, state, i)
                   for i in crew.blocking_members]
            )
            assert all(isinstance(n, int) for n in results), results
            total += sum(n for n in results if isinstance(n, int))
            assert state.count == total, (state.count, total)
            assert not mu.locked()
            assert live_waiters(mu._waiters) == 0
        await crew.stop()
        return {"increments": total, "attempts": LOCK_ROUNDS * crew.size * OPS}

    run_bounded(main, seed=seed, limit=150.0, what="Mutex counter")


# -- RWMutex -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Shared:
    value: int = 0  # written by writers only, under the write lock
    # Who is inside, under `check` (instrumentation, not the lock under test).
    check: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    readers: int = 0
    writers: int = 0
    most_readers: int = 0

    def enter(self, writer: bool) -> None:
        with self.check:
            assert self.writers == 0, "inside with a writer"
            if writer:
                assert self.readers == 0, f"a writer inside with {self.readers} readers"
                self.writers = 1
            else:
                self.readers += 1
                self.most_readers = max(self.most_readers, self.readers)

    def leave(self, writer: bool) -> None:
        with self.check:
            if writer:
                self.writers = 0
            else:
                self.readers -= 1


async def _read_or_write(rw: gorun.RWMutex, state: Shared, rng: random.Random) -> int:
    writes = 0
    for _ in range(OPS):
        writer = rng.randrange(4) == 0
        if writer:
            if not await acquire(rw.lock, rw.try_lock, rng):
                continue
        elif not await acquire(rw.rlock, rw.try_rlock, rng):
            continue
        try:
            state.enter(writer)
            value = state.value
            await pause(rng)
            assert state.value == value, "the value changed under a lock holder"
            if writer:
                state.value = value + 1
                writes += 1
            state.leave(writer)
        finally:
            if writer:
                rw.unlock()
            else:
                rw.runlock()
    return writes


def _read_or_write_blocking(rw: gorun.RWMutex, state: Shared, rng: random.Random) -> int:
    writes = 0
    for _ in range(OPS):
        writer = rng.randrange(4) == 0
        if not (rw.try_lock() if writer else rw.try_rlock()):
            continue
        try:
            state.enter(writer)
            value = state.value
            time.sleep(0)
            assert state.value == value, "the value changed under a lock holder"
            if writer:
                state.value = value + 1
                writes += 1
            state.leave(writer)
        finally:
            if writer:
                rw.unlock()
            else:
                rw.runlock()
    return writes


def test_stress_rwmutex_never_a_writer_with_anyone_else(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> dict[str, int]:
        crew = Crew(per_worker=3, blocking_threads=1)
        await crew.start()
        rw = gorun.RWMutex()
        state = Shared()
        writes = 0
        for _ in range(LOCK_ROUNDS):
            rngs = [random.Random(rng.getrandbits(64)) for _ in range(crew.size)]
            results = await crew.round(
                [functools.partial(_read_or_write, rw, state, rngs[i]) for i in crew.async_members]
                + [functools.partial(_read_or_write_blocking, rw, state, rngs[i])
                   for i in crew.blocking_members]
            )
            assert all(isinstance(n, int) for n in results), results
            writes += sum(n for n in results if isinstance(n, int))
            assert state.value == writes, (state.value, writes)
            assert (state.readers, state.writers) == (0, 0)
            assert not rw.locked(), rw
            assert not rw.rlocked(), rw
            assert live_waiters(rw._rq) == live_waiters(rw._wq) == 0, rw
        await crew.stop()
        return {"writes": writes, "most readers at once": state.most_readers}

    run_bounded(main, seed=seed, limit=150.0, what="RWMutex")


# -- WaitGroup -----------------------------------------------------------------------------------

WG_ROUNDS = 4_000


async def _child(done: list[int]) -> None:
    await asyncio.sleep(0)
    done.append(1)


async def _wg_member(
    wg: gorun.WaitGroup, done: list[int], role: str, rng: random.Random, children: int
) -> object:
    await pause(rng)
    if role == "worker":
        for _ in range(children):
            wg.go(_child(done))  # adds while its own count is still held
        done.append(1)
        wg.done()
        return "done"
    if rng.randrange(4) == 0:
        try:
            async with asyncio.timeout(rng.choice(TINY)):
                await wg.wait()
        except TimeoutError:
            return "gave up"
    else:
        await wg.wait()
    return len(done)


def _wg_member_blocking(wg: gorun.WaitGroup, done: list[int], role: str) -> object:
    if role == "worker":
        done.append(1)
        wg.done()
        return "done"
    wg.wait_blocking(timeout=30.0)
    return len(done)


def test_stress_waitgroup_waiters_wake_after_every_done(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> Counter[str]:
        crew = Crew(blocking_threads=2)
        await crew.start()
        seen: Counter[str] = Counter()
        for r in range(WG_ROUNDS):
            wg = gorun.WaitGroup()
            done: list[int] = []
            roles = [rng.choice(("worker", "worker", "waiter")) for _ in range(crew.size)]
            # Goroutine workers start a few children with wg.go() before their own done().
            children = [rng.randrange(3) if rng.randrange(3) == 0 else 0 for _ in roles]
            rngs = [random.Random(rng.getrandbits(64)) for _ in roles]
            workers = roles.count("worker")
            expected = workers + sum(
                children[i] for i in range(crew.n_async) if roles[i] == "worker"
            )
            wg.add(workers)
            crew.dispatch(
                [functools.partial(_wg_member, wg, done, roles[i], rngs[i], children[i])
                 for i in crew.async_members]
                + [functools.partial(_wg_member_blocking, wg, done, roles[i])
                   for i in crew.blocking_members]
            )
            await wg.wait()
            assert len(done) == expected, f"round {r}: woke after {len(done)} of {expected}"
            results = await crew.collect()
            for i, result in enumerate(results):
                if roles[i] == "worker":
                    assert result == "done", (r, i, result)
                elif result == "gave up":
                    seen["waits given up"] += 1
                else:
                    assert result == expected, f"round {r}: member {i} woke at {result}"
                    seen["waits"] += 1
            assert wg.count == 0
            seen["done() calls"] += expected
        await crew.stop()
        return seen

    run_bounded(main, seed=seed, limit=150.0, what="WaitGroup")


# -- Once ----------------------------------------------------------------------------------------

ONCE_ROUNDS = 3_000


@dataclasses.dataclass
class OnceRound:
    ran: list[int] = dataclasses.field(default_factory=list)
    finished: bool = False
    fail: bool = False


async def _once_fn(state: OnceRound, me: int, rng: random.Random) -> None:
    state.ran.append(me)
    await pause(rng)
    state.finished = True
    if state.fail:
        raise ValueError(me)


async def _once_caller(
    once: gorun.Once, state: OnceRound, me: int, rng: random.Random
) -> object:
    await pause(rng)
    fn = functools.partial(_once_fn, state, me, rng)
    if rng.randrange(5) == 0:
        try:
            async with asyncio.timeout(rng.choice(TINY)):
                await once.do(fn)
        except TimeoutError:
            return "gave up"
    else:
        await once.do(fn)
    return "returned" if state.finished else "returned early"


def test_stress_once_runs_once(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> Counter[str]:
        crew = Crew(per_worker=3, blocking_threads=0)
        await crew.start()
        seen: Counter[str] = Counter()
        for r in range(ONCE_ROUNDS):
            once = gorun.Once()
            state = OnceRound(fail=rng.randrange(4) == 0)
            rngs = [random.Random(rng.getrandbits(64)) for _ in range(crew.size)]
            results = await crew.round(
                [functools.partial(_once_caller, once, state, i, rngs[i])
                 for i in crew.async_members]
            )
            assert len(state.ran) == 1, f"round {r}: fn ran for members {state.ran}"
            assert once.done
            runner = state.ran[0]
            outcome = results[runner]
            if state.fail and outcome != "gave up":
                assert isinstance(outcome, ValueError), outcome
                assert outcome.args == (runner,), outcome
            for i, result in enumerate(results):
                if i == runner:
                    continue
                if outcome == "gave up":  # fn was cancelled: the others may not wait for it
                    assert result in ("returned", "returned early", "gave up"), (r, i, result)
                else:
                    assert result in ("returned", "gave up"), f"round {r}: member {i}: {result}"
                seen[str(result)] += 1
            seen["fn failed" if state.fail else "fn returned"] += 1
        await crew.stop()
        return seen

    run_bounded(main, seed=seed, limit=150.0, what="Once")
