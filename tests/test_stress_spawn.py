"""Stress: spawn storms, work stealing, and cancels racing the start of a goroutine.

* Storms: spawners on every worker, on foreign asyncio loops in plain threads and on
  plain threads without a loop start trees of goroutines, round after round. Each node
  starts its children (``go()`` or ``go(local=True)``, nested three deep) and collects
  them by awaiting the handles, through a WaitGroup, a Group, a channel or
  ``asyncio.gather``: every goroutine runs exactly once, every tree's count adds up,
  and ``num_goroutine()`` is back to zero at the end.
* Stealing: a goroutine starts children and then blocks its worker's thread until all
  of them have started: idle workers must take every one of them from its queue.
* Cancel racing start: goroutines handed, right after ``go()``, to cancellers on other
  workers and plain threads (or cancelled at once by their spawner) race the worker that
  starts them: each runs at most once and ends either cancelled or with its result.

Run with ``pytest -m stress``; the opt-in and the ``seed`` (``GORUN_STRESS_SEED``) are
in ``conftest.py``, the harness in ``support.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
import threading
from collections import Counter
from typing import Any

import pytest

import gorun
from tests.support import PROCS, STEP_TIMEOUT, Crew, parked, pinner, run_bounded, stuck

pytestmark = [pytest.mark.stress, pytest.mark.timeout(600)]

Path = tuple[int, ...]


# -- storms ------------------------------------------------------------------------------------

STORM_ROUNDS = 300
DEPTH = 3
FANOUT = 3
TREE = sum(FANOUT**d for d in range(DEPTH + 1))  # goroutines per tree


async def _wrap(child: Any, out: list[int]) -> None:
    out.append(await child)


async def _send(child: Any, ch: gorun.Chan[int]) -> None:
    await ch.send(await child)


async def node(path: Path, depth: int, rng: random.Random, ran: list[tuple[Path, int]]) -> int:
    """Record that this node ran (and where); start its children, collect their counts in
    one of several ways, and return the size of this subtree."""
    ran.append((path, threading.get_ident()))
    if depth == 0:
        if rng.randrange(2):
            await asyncio.sleep(0)
        return 1
    kids = [
        node((*path, i), depth - 1, random.Random(rng.getrandbits(64)), ran)
        for i in range(FANOUT)
    ]
    local = [rng.randrange(4) == 0 for _ in kids]
    mode = rng.randrange(5)
    counts: list[int] = []
    if mode == 0:
        gs = [gorun.go(k, local=loc) for k, loc in zip(kids, local, strict=True)]
        counts = [await g for g in gs]
    elif mode == 1:
        wg = gorun.WaitGroup()
        for k in kids:
            wg.go(_wrap(k, counts))
        await wg.wait()
    elif mode == 2:
        async with gorun.Group() as group:
            for k in kids:
                group.go(_wrap(k, counts))
    elif mode == 3:
        ch = gorun.Chan[int](rng.randrange(2))
        for k, loc in zip(kids, local, strict=True):
            gorun.go(_send(k, ch), local=loc)
        counts = [await ch.recv() for _ in kids]
    else:
        gs = [gorun.go(k, local=loc) for k, loc in zip(kids, local, strict=True)]
        counts = list(await asyncio.gather(*gs))
    return 1 + sum(counts)


def expected_paths(root: Path) -> list[Path]:
    paths = [root]
    for d in range(1, DEPTH + 1):
        paths += [(*root, *rest) for rest in _tuples(d)]
    return paths


def _tuples(n: int) -> list[Path]:
    out: list[Path] = [()]
    for _ in range(n):
        out = [(*t, i) for t in out for i in range(FANOUT)]
    return out


async def _grow(root: Path, seed: int, ran: list[tuple[Path, int]]) -> int:
    return await gorun.go(node(root, DEPTH, random.Random(seed), ran))


def _grow_blocking(root: Path, seed: int, ran: list[tuple[Path, int]]) -> int:
    return gorun.go(node(root, DEPTH, random.Random(seed), ran)).wait(STEP_TIMEOUT)


def test_stress_spawn_storm_runs_every_goroutine_once(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> dict[str, int]:
        crew = Crew(blocking_threads=2)
        await crew.start()
        ran: list[tuple[Path, int]] = []
        threads: set[int] = set()
        for r in range(STORM_ROUNDS):
            seeds = [rng.getrandbits(64) for _ in range(crew.size)]
            ran.clear()
            results = await crew.round(
                [functools.partial(_grow, (r, i), seeds[i], ran) for i in crew.async_members]
                + [functools.partial(_grow_blocking, (r, i), seeds[i], ran)
                   for i in crew.blocking_members]
            )
            assert results == [TREE] * crew.size, (r, results)
            counts = Counter(path for path, _ in ran)
            want = Counter(p for i in range(crew.size) for p in expected_paths((r, i)))
            assert counts == want, (
                f"round {r}: ran twice {[p for p, n in counts.items() if n > 1][:5]}, "
                f"never ran {list((want - counts).elements())[:5]}"
            )
            threads.update(ident for _, ident in ran)
        await crew.stop()
        assert threads <= crew.worker_threads, "a goroutine ran off the workers"
        assert gorun.num_goroutine() == 0
        stats = gorun.stats()
        return {
            "goroutines": STORM_ROUNDS * crew.size * TREE,
            "workers used": len(threads),
            "stolen": sum(w.stolen for w in stats.workers),
        }

    run_bounded(main, seed=seed, limit=150.0, what="spawn storm")


# -- stealing from a blocked worker ----------------------------------------------------------

STEAL_ROUNDS = 2_000


async def _child(started: list[int], n: int, all_started: threading.Event) -> int:
    started.append(1)
    if len(started) == n:
        all_started.set()
    return threading.get_ident()


async def _blocked_spawner(n: int) -> tuple[int, list[int]]:
    started: list[int] = []
    all_started = threading.Event()
    gs = [gorun.go(_child(started, n, all_started)) for _ in range(n)]
    # Block this worker's thread: its queue can only be emptied by other workers.
    if not all_started.wait(STEP_TIMEOUT):
        raise stuck(f"{len(started)} of {n} children started while their spawner's thread blocked")
    return threading.get_ident(), [await g for g in gs]


def test_stress_idle_workers_steal_from_a_blocked_one(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> dict[str, int]:
        stolen_before = sum(w.stolen for w in gorun.stats().workers)
        children = 0
        for r in range(STEAL_ROUNDS):
            n = rng.randrange(1, 13)
            me, where = await gorun.go(_blocked_spawner(n))
            assert me not in where, f"round {r}: a child ran on its blocked spawner's thread"
            children += n
        stolen = sum(w.stolen for w in gorun.stats().workers) - stolen_before
        assert stolen >= children
        return {"children": children, "stolen": stolen}

    run_bounded(main, seed=seed, limit=120.0, what="stealing")


# -- cancel racing start ---------------------------------------------------------------------

CANCEL_SPAWNS = 4_000  # per spawner


async def _victim(
    token: int, mode: int, never: gorun.Chan[None], led: list[tuple[str, int]]
) -> int:
    led.append(("started", token))
    if mode == 1:
        await asyncio.sleep(0)
    elif mode == 2:
        await never.recv()  # only a cancel ends it
    led.append(("finished", token))
    return token


async def _spawner(
    k: int,
    rng: random.Random,
    victims: gorun.Chan[gorun.Goroutine[int] | None],
    never: gorun.Chan[None],
    led: list[tuple[str, int]],
) -> list[tuple[int, int, gorun.Goroutine[int]]]:
    out = []
    for j in range(CANCEL_SPAWNS):
        token, mode = k * CANCEL_SPAWNS + j, rng.randrange(3)
        g = gorun.go(_victim(token, mode, never, led), local=rng.randrange(8) == 0)
        out.append((token, mode, g))
        if rng.randrange(4) == 0:
            g.cancel()  # from the spawner's own thread, before or as it starts
        else:
            await victims.send(g)
    return out


def _spawner_thread(
    k: int,
    rng: random.Random,
    victims: gorun.Chan[gorun.Goroutine[int] | None],
    never: gorun.Chan[None],
    led: list[tuple[str, int]],
    out: list[tuple[int, int, gorun.Goroutine[int]]],
) -> None:
    for j in range(CANCEL_SPAWNS):
        token, mode = k * CANCEL_SPAWNS + j, rng.randrange(3)
        g = gorun.go(_victim(token, mode, never, led))
        out.append((token, mode, g))
        if rng.randrange(4) == 0:
            g.cancel()
        else:
            victims.send_blocking(g, timeout=STEP_TIMEOUT)


async def _canceller(victims: gorun.Chan[gorun.Goroutine[int] | None]) -> int:
    n = 0
    async for g in victims:
        assert g is not None
        g.cancel()
        n += 1
    return n


def _canceller_thread(victims: gorun.Chan[gorun.Goroutine[int] | None]) -> None:
    while True:
        try:
            g = victims.recv_blocking(timeout=STEP_TIMEOUT)
        except gorun.Closed:
            return
        assert g is not None
        g.cancel()


def test_stress_cancel_races_the_start_of_a_goroutine(seed: int) -> None:
    rng = random.Random(seed)
    spawners_per_worker, thread_spawners, cancellers, thread_cancellers = 2, 2, PROCS, 2

    async def main() -> Counter[str]:
        victims = gorun.Chan[gorun.Goroutine[int] | None](rng.choice((0, 1, 16)))
        never = gorun.Chan[None]()
        led: list[tuple[str, int]] = []
        n_spawners = PROCS * spawners_per_worker
        rngs = [random.Random(rng.getrandbits(64)) for _ in range(n_spawners + thread_spawners)]
        pin = pinner(PROCS)

        async def host(w: int) -> list[gorun.Goroutine[Any]]:
            pin()  # one host per worker
            first = w * spawners_per_worker
            gs: list[gorun.Goroutine[Any]] = [
                gorun.go(_spawner(k, rngs[k], victims, never, led), local=True)
                for k in range(first, first + spawners_per_worker)
            ]
            if w < cancellers:
                gs.append(gorun.go(_canceller(victims), local=True))
            return gs

        hosts = [gorun.go(host(w)) for w in range(PROCS)]
        started = [await h for h in hosts]
        spawners = [gs[:spawners_per_worker] for gs in started]
        goroutine_cancellers = [g for gs in started for g in gs[spawners_per_worker:]]
        outs: list[list[tuple[int, int, gorun.Goroutine[int]]]] = [
            [] for _ in range(thread_spawners)
        ]
        threads = []
        for t in range(thread_spawners):
            args = (n_spawners + t, rngs[n_spawners + t], victims, never, led, outs[t])
            ctx = contextvars.copy_context()  # go() there joins this runtime
            threads.append(threading.Thread(target=ctx.run, args=(_spawner_thread, *args)))
        for _ in range(thread_cancellers):
            threads.append(threading.Thread(target=_canceller_thread, args=(victims,)))
        for th in threads:
            th.start()
        handles = [x for gs in spawners for g in gs for x in await g]
        for th in threads[:thread_spawners]:
            await asyncio.to_thread(th.join, STEP_TIMEOUT)
        handles += [x for out in outs for x in out]
        victims.close()
        cancelled_by_goroutines = sum([await g for g in goroutine_cancellers])
        for th in threads[thread_spawners:]:
            await asyncio.to_thread(th.join, STEP_TIMEOUT)
        assert not any(th.is_alive() for th in threads)
        for _, _, g in handles:
            with contextlib.suppress(asyncio.CancelledError):
                await g
        seen: Counter[str] = Counter()
        events = Counter(led)
        assert max(events.values()) == 1, [e for e, n in events.items() if n > 1][:5]
        for token, mode, g in handles:
            ran, finished = ("started", token) in events, ("finished", token) in events
            assert g.done()
            if g.cancelled():
                assert not finished, f"{g!r} finished and was cancelled"
                seen["cancelled while running" if ran else "cancelled before it started"] += 1
            else:
                assert finished, (g, ran, finished)
                assert g.result() == token, g
                seen["finished first"] += 1
            if mode == 2:
                assert g.cancelled(), f"{g!r} parked until cancelled, yet ended otherwise"
        assert parked(never) == (0, 0), never
        assert gorun.num_goroutine() == 0
        seen["cancelled by goroutines"] = cancelled_by_goroutines
        return seen

    run_bounded(main, seed=seed, limit=120.0, what="cancel racing start")
