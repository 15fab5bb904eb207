"""Sync primitives across workers: WaitGroup, Mutex, RWMutex, Once and Group.

Events are ordered without sleeps: a goroutine that blocks its worker thread in
``barrier.wait()`` forces the others onto other workers, channels and events hand
control over, and ``_until`` yields until a primitive shows the expected waiters.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import gorun

TIMEOUT = 10.0
PROCS = 4

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_never_awaited")]


def _pinner(n: int) -> Callable[[], int]:
    """``pin()`` blocks until *n* callers arrived, so *n* goroutines calling it run on
    *n* distinct worker threads at once; it returns the caller's thread id."""
    barrier = threading.Barrier(n, timeout=TIMEOUT)

    def pin() -> int:
        barrier.wait()
        return threading.get_ident()

    return pin


async def _until(pred: Callable[[], bool]) -> None:
    """Yield to the loop until *pred* holds (a goroutine elsewhere has queued itself)."""
    for _ in range(10_000_000):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def _group_errors(body: Callable[[], Awaitable[None]]) -> list[str]:
    """Run *body* (which runs a Group); return the reprs of the ExceptionGroup it raises."""
    try:
        await body()
    except ExceptionGroup as eg:
        return [repr(e) for e in eg.exceptions]
    raise AssertionError("no ExceptionGroup")


async def _forever() -> None:
    await gorun.Chan[None]().recv()


# -- WaitGroup --------------------------------------------------------------------------------


def test_waitgroup_across_workers() -> None:
    pin = _pinner(PROCS)

    async def main() -> tuple[set[int], int]:
        wg = gorun.WaitGroup()
        wg.add(PROCS)
        done = gorun.Chan[int](PROCS)

        async def work() -> None:
            tid = pin()
            done.send_nowait(tid)
            wg.done()

        for _ in range(PROCS):
            gorun.go(work())
        await wg.wait()
        tids = {done.recv_nowait() for _ in range(PROCS)}
        return tids, wg.count

    tids, count = gorun.run(main(), procs=PROCS)
    assert len(tids) == PROCS
    assert count == 0


def test_waitgroup_waiters_on_other_workers_all_wake() -> None:
    async def main() -> list[bool]:
        wg = gorun.WaitGroup()
        wg.add(1)
        pin = _pinner(3)

        async def waiter() -> bool:
            pin()
            await wg.wait()
            return wg.count == 0

        gs = [gorun.go(waiter()) for _ in range(3)]
        await _until(lambda: len(wg._waiters) == 3)
        wg.done()
        return [await g for g in gs]

    assert gorun.run(main(), procs=PROCS) == [True, True, True]


def test_waitgroup_from_plain_threads() -> None:
    async def main() -> list[str]:
        wg = gorun.WaitGroup()
        wg.add(3)
        seen: list[str] = []
        gate = threading.Event()

        def plain_done() -> None:
            gate.wait(TIMEOUT)
            wg.done()

        def plain_wait() -> None:
            wg.wait_blocking(TIMEOUT)
            seen.append("plain waiter")

        threads = [threading.Thread(target=plain_done) for _ in range(2)]
        waiter = threading.Thread(target=plain_wait)
        for t in [*threads, waiter]:
            t.start()
        await _until(lambda: len(wg._waiters) == 1)
        gate.set()

        async def goroutine_done() -> None:
            wg.done()

        gorun.go(goroutine_done())
        await wg.wait()
        await asyncio.to_thread(waiter.join, TIMEOUT)
        for t in threads:
            await asyncio.to_thread(t.join, TIMEOUT)
        seen.append("goroutine waiter")
        return seen

    assert gorun.run(main(), procs=PROCS) == ["plain waiter", "goroutine waiter"]


def test_waitgroup_wait_on_zero_returns_at_once() -> None:
    async def main() -> None:
        await gorun.WaitGroup().wait()

    gorun.run(main(), procs=2)
    gorun.WaitGroup().wait_blocking(0)


def test_waitgroup_wait_blocking_timeout_and_loop_thread() -> None:
    wg = gorun.WaitGroup()
    wg.add(1)
    with pytest.raises(TimeoutError):
        wg.wait_blocking(0.01)
    assert not wg._waiters

    async def main() -> None:
        with pytest.raises(RuntimeError, match="would block the event loop"):
            wg.wait_blocking(0)

    gorun.run(main(), procs=2)


def test_waitgroup_negative_counter() -> None:
    wg = gorun.WaitGroup()
    with pytest.raises(ValueError, match="negative WaitGroup counter"):
        wg.done()
    wg.add(2)
    with pytest.raises(ValueError, match="negative WaitGroup counter"):
        wg.add(-3)
    assert wg.count == 2  # unchanged
    with pytest.raises(TypeError):
        wg.add(1.0)  # type: ignore[arg-type]
    assert "count=2" in repr(wg)


def test_waitgroup_go_counts_every_outcome() -> None:
    async def ok() -> int:
        return 7

    async def fail() -> None:
        raise ValueError("boom")

    async def main() -> tuple[int, str, bool, int]:
        wg = gorun.WaitGroup()
        g1 = wg.go(ok(), name="ok")
        g2 = wg.go(fail())
        g3 = wg.go(_forever())
        g3.cancel()
        await wg.wait()
        with pytest.raises(ValueError, match="boom"):
            await g2
        return await g1, g1.name, g3.cancelled(), wg.count

    assert gorun.run(main(), procs=PROCS) == (7, "ok", True, 0)


def test_waitgroup_go_bad_argument_leaves_counter() -> None:
    wg = gorun.WaitGroup()
    with pytest.raises(TypeError):
        wg.go(_forever)  # type: ignore[arg-type]
    assert wg.count == 0


def test_waitgroup_wait_cancelled_gives_up() -> None:
    async def main() -> tuple[bool, int]:
        wg = gorun.WaitGroup()
        wg.add(1)
        g = gorun.go(wg.wait())
        await _until(lambda: len(wg._waiters) == 1)
        g.cancel()
        with pytest.raises(asyncio.CancelledError):
            await g
        return bool(wg._waiters), wg.count

    assert gorun.run(main(), procs=PROCS) == (False, 1)


def test_waitgroup_wait_cancelled_as_it_completes_raises() -> None:
    async def main() -> tuple[list[str], int]:
        wg = gorun.WaitGroup()
        wg.add(1)
        log: list[str] = []

        async def waiter() -> None:
            await wg.wait()
            log.append("returned")

        g = gorun.go(waiter(), local=True)
        await _until(lambda: len(wg._waiters) == 1)
        wg.done()  # claims the waiter and resolves its future, on this loop
        g.cancel()  # reaches the task before it resumes: the wait raises
        with pytest.raises(asyncio.CancelledError):
            await g
        await wg.wait()  # the counter is still zero
        return log, wg.count

    assert gorun.run(main(), procs=2) == ([], 0)


# -- Mutex ------------------------------------------------------------------------------------


def test_mutex_excludes_across_workers() -> None:
    n = 200
    pin = _pinner(PROCS)

    async def main() -> tuple[set[int], dict[str, int], bool]:
        mu = gorun.Mutex()
        state = {"count": 0, "inside": 0, "most": 0}

        async def worker() -> int:
            tid = pin()
            for _ in range(n):
                async with mu:
                    state["inside"] += 1
                    state["most"] = max(state["most"], state["inside"])
                    value = state["count"]
                    await asyncio.sleep(0)  # let the other workers try to get in
                    state["count"] = value + 1
                    state["inside"] -= 1
            return tid

        gs = [gorun.go(worker()) for _ in range(PROCS)]
        tids = {await g for g in gs}
        return tids, state, mu.locked()

    tids, state, locked = gorun.run(main(), procs=PROCS)
    assert len(tids) == PROCS
    assert state == {"count": PROCS * n, "inside": 0, "most": 1}
    assert not locked


def test_mutex_fifo_hand_off() -> None:
    async def main() -> tuple[list[int], bool]:
        mu = gorun.Mutex()
        order: list[int] = []
        await mu.lock()

        async def waiter(i: int) -> None:
            await mu.lock()
            order.append(i)
            mu.unlock()

        gs = []
        for i in range(6):
            gs.append(gorun.go(waiter(i)))
            await _until(lambda i=i: len(mu._waiters) == i + 1)  # type: ignore[misc]
        mu.unlock()
        for g in gs:
            await g
        return order, mu.locked()

    assert gorun.run(main(), procs=PROCS) == (list(range(6)), False)


def test_mutex_unlock_hands_off_without_freeing() -> None:
    async def main() -> list[bool]:
        mu = gorun.Mutex()
        await mu.lock()
        g = gorun.go(mu.lock(), local=True)
        await _until(lambda: len(mu._waiters) == 1)
        mu.unlock()
        barged = mu.try_lock()  # the waiter owns it already, although it has not run
        await g
        still = mu.locked()
        mu.unlock()
        return [barged, still, mu.locked()]

    assert gorun.run(main(), procs=2) == [False, True, False]


def test_mutex_try_lock_and_unlock_errors() -> None:
    mu = gorun.Mutex()
    assert not mu.locked()
    assert mu.try_lock()
    assert mu.locked()
    assert not mu.try_lock()
    assert "locked" in repr(mu)
    mu.unlock()  # not owner-checked, like Go: any goroutine (or thread) may unlock
    with pytest.raises(RuntimeError, match="unlock of unlocked Mutex"):
        mu.unlock()
    assert "unlocked" in repr(mu)


def test_mutex_unlock_from_another_worker() -> None:
    async def main() -> bool:
        mu = gorun.Mutex()
        await mu.lock()
        pin = _pinner(2)

        async def other() -> int:
            tid = pin()
            mu.unlock()
            return tid

        g = gorun.go(other())
        here = await asyncio.to_thread(pin)  # not this loop's thread: that stays free
        there = await g
        await mu.lock()  # free again
        mu.unlock()
        return here != there

    assert gorun.run(main(), procs=PROCS)


def test_mutex_cancel_while_waiting_gives_up() -> None:
    async def main() -> tuple[bool, bool, bool]:
        mu = gorun.Mutex()
        await mu.lock()
        g = gorun.go(mu.lock())
        await _until(lambda: len(mu._waiters) == 1)
        g.cancel()
        with pytest.raises(asyncio.CancelledError):
            await g
        queued = bool(mu._waiters)
        mu.unlock()
        freed = not mu.locked()
        async with mu:  # still usable
            held = mu.locked()
        return queued, freed, held and not mu.locked()

    assert gorun.run(main(), procs=PROCS) == (False, True, True)


def test_mutex_grant_racing_a_cancel_is_passed_on() -> None:
    # unlock() hands the lock to a waiter whose task is cancelled before it resumes:
    # the cancelled waiter must not keep the lock; it goes to the next waiter.
    async def main() -> tuple[list[str], bool, bool]:
        mu = gorun.Mutex()
        log: list[str] = []
        await mu.lock()

        async def first() -> None:
            async with mu:
                log.append("first entered")

        async def second() -> None:
            async with mu:
                log.append("second entered")

        g1 = gorun.go(first(), local=True)
        await _until(lambda: len(mu._waiters) == 1)
        g2 = gorun.go(second(), local=True)
        await _until(lambda: len(mu._waiters) == 2)
        mu.unlock()  # hands the lock to first: its future is resolved
        g1.cancel()  # reaches first before it resumes
        with pytest.raises(asyncio.CancelledError):
            await g1
        await g2
        return log, g2.done(), mu.locked()

    log, second_done, locked = gorun.run(main(), procs=2)
    assert log == ["second entered"]
    assert second_done
    assert not locked


def test_mutex_grant_racing_a_cancel_frees_the_lock() -> None:
    async def main() -> tuple[list[str], bool]:
        mu = gorun.Mutex()
        await mu.lock()
        got: list[str] = []

        async def taker() -> None:
            await mu.lock()
            got.append("locked")

        g = gorun.go(taker(), local=True)
        await _until(lambda: len(mu._waiters) == 1)
        mu.unlock()
        g.cancel()
        with pytest.raises(asyncio.CancelledError):
            await g
        return got, mu.locked()

    assert gorun.run(main(), procs=2) == ([], False)


# -- RWMutex ----------------------------------------------------------------------------------


def test_rwmutex_readers_share_across_workers() -> None:
    n = 3
    pin = _pinner(n)
    inside = threading.Barrier(n, timeout=TIMEOUT)

    async def main() -> tuple[set[int], int]:
        rw = gorun.RWMutex()

        async def reader() -> int:
            tid = pin()
            async with rw.reader:
                inside.wait()  # all n readers hold the lock at once
            return tid

        gs = [gorun.go(reader()) for _ in range(n)]
        tids = {await g for g in gs}
        return tids, rw.rlocked()

    tids, rlocked = gorun.run(main(), procs=PROCS)
    assert len(tids) == n
    assert not rlocked


def test_rwmutex_writer_excludes() -> None:
    async def main() -> list[object]:
        rw = gorun.RWMutex()
        log: list[object] = []
        await rw.lock()
        log += [rw.locked(), rw.try_rlock(), rw.try_lock()]

        async def reader() -> None:
            async with rw.reader:
                log.append(("reader in", rw.locked()))

        async def writer() -> None:
            async with rw.writer:
                log.append(("writer in", rw._readers))

        g1 = gorun.go(reader())
        await _until(lambda: len(rw._rq) == 1)
        rw.unlock()
        await g1
        g2 = gorun.go(writer())
        await g2
        log.append(rw.try_lock())
        rw.unlock()
        log.append(rw.try_rlock())
        rw.runlock()
        return log

    assert gorun.run(main(), procs=PROCS) == [
        True, False, False, ("reader in", False), ("writer in", 0), True, True,
    ]


def test_rwmutex_prefers_waiting_writer() -> None:
    async def main() -> list[str]:
        rw = gorun.RWMutex()
        log: list[str] = []
        await rw.rlock()  # reader 1 holds the lock

        async def writer() -> None:
            await rw.lock()
            log.append(f"writer in, readers={rw._readers}")
            rw.unlock()

        async def reader2() -> None:
            await rw.rlock()
            log.append(f"reader2 in, writer={rw.locked()}")
            rw.runlock()

        gw = gorun.go(writer())
        await _until(lambda: len(rw._wq) == 1)
        # A writer waits: new readers wait behind it, although only readers hold it.
        log.append(f"try_rlock={rw.try_rlock()}")
        gr = gorun.go(reader2())
        await _until(lambda: len(rw._rq) == 1)
        rw.runlock()  # the last reader out lets the writer in, then reader2 follows
        await gw
        await gr
        log.append(f"free={not rw.locked() and not rw.rlocked()}")
        return log

    assert gorun.run(main(), procs=PROCS) == [
        "try_rlock=False",
        "writer in, readers=0",
        "reader2 in, writer=False",
        "free=True",
    ]


def test_rwmutex_readers_waiting_on_a_writer_go_before_the_next_writer() -> None:
    async def main() -> list[str]:
        rw = gorun.RWMutex()
        log: list[str] = []
        await rw.lock()

        async def reader(i: int) -> None:
            async with rw.reader:
                log.append(f"r{i}")

        async def writer() -> None:
            async with rw.writer:
                log.append("w2")

        gr1 = gorun.go(reader(1), local=True)
        await _until(lambda: len(rw._rq) == 1)
        gw = gorun.go(writer(), local=True)
        await _until(lambda: len(rw._wq) == 1)
        gr2 = gorun.go(reader(2), local=True)
        await _until(lambda: len(rw._rq) == 2)
        rw.unlock()  # both waiting readers get in, then the writer
        for g in (gr1, gr2, gw):
            await g
        return log

    assert gorun.run(main(), procs=2) == ["r1", "r2", "w2"]


def test_rwmutex_cancelled_writer_lets_readers_in() -> None:
    async def main() -> tuple[int, bool]:
        rw = gorun.RWMutex()
        await rw.rlock()
        gw = gorun.go(rw.lock())
        await _until(lambda: len(rw._wq) == 1)
        gr = gorun.go(rw.rlock())
        await _until(lambda: len(rw._rq) == 1)
        gw.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gw
        await gr  # admitted once no writer waits
        readers = rw._readers
        rw.runlock()
        rw.runlock()
        return readers, rw.try_lock()

    assert gorun.run(main(), procs=PROCS) == (2, True)


def test_rwmutex_unlock_errors() -> None:
    rw = gorun.RWMutex()
    with pytest.raises(RuntimeError, match="unlock of unlocked RWMutex"):
        rw.unlock()
    with pytest.raises(RuntimeError, match="runlock of unlocked RWMutex"):
        rw.runlock()
    assert rw.try_rlock()
    with pytest.raises(RuntimeError, match="unlock of unlocked RWMutex"):
        rw.unlock()
    rw.runlock()
    assert "RWMutex" in repr(rw.reader)
    assert "RWMutex" in repr(rw.writer)
    assert "readers=0" in repr(rw)


def test_rwmutex_invariants_under_contention() -> None:
    rounds = 100
    pin = _pinner(PROCS)

    async def main() -> tuple[set[int], list[str], int]:
        rw = gorun.RWMutex()
        guard = threading.Lock()
        state = {"readers": 0, "writers": 0, "value": 0}
        errors: list[str] = []

        def enter(kind: str) -> None:
            with guard:
                state[kind] += 1
                if state["writers"] > 1 or (state["writers"] and state["readers"]):
                    errors.append(f"{state}")

        def leave(kind: str) -> None:
            with guard:
                state[kind] -= 1

        async def worker(i: int) -> int:
            tid = pin()
            for r in range(rounds):
                if (r + i) % 4 == 0:
                    async with rw.writer:
                        enter("writers")
                        value = state["value"]
                        await asyncio.sleep(0)
                        state["value"] = value + 1
                        leave("writers")
                else:
                    async with rw.reader:
                        enter("readers")
                        await asyncio.sleep(0)
                        leave("readers")
            return tid

        gs = [gorun.go(worker(i)) for i in range(PROCS)]
        tids = {await g for g in gs}
        return tids, errors, state["value"]

    tids, errors, value = gorun.run(main(), procs=PROCS)
    assert len(tids) == PROCS
    assert errors == []
    assert value == PROCS * rounds // 4


# -- Once -------------------------------------------------------------------------------------


def test_once_runs_once_across_workers_and_callers_wait() -> None:
    n = 4
    pin = _pinner(n)

    async def main() -> tuple[int, list[bool], set[int]]:
        once = gorun.Once()
        release = gorun.Chan[None]()
        state = {"calls": 0, "ready": False}

        async def init() -> None:
            state["calls"] += 1
            await release.recv()
            state["ready"] = True

        async def caller() -> tuple[int, bool]:
            tid = pin()
            await once.do(init)
            return tid, bool(state["ready"])  # the first call had finished

        gs = [gorun.go(caller()) for _ in range(n)]
        await _until(lambda: len(once._waiters) == n - 1)
        assert not once.done
        await release.send(None)
        out = [await g for g in gs]
        await once.do(init)  # done: returns at once
        return state["calls"], [ready for _, ready in out], {tid for tid, _ in out}

    calls, ready, tids = gorun.run(main(), procs=PROCS)
    assert calls == 1
    assert ready == [True] * n
    assert len(tids) == n


def test_once_plain_function() -> None:
    async def main() -> list[int]:
        once = gorun.Once()
        calls: list[int] = []
        for i in range(3):
            await once.do(lambda i=i: calls.append(i))  # type: ignore[misc]
        return calls

    assert gorun.run(main(), procs=2) == [0]


def test_once_exception_counts_as_done() -> None:
    async def main() -> tuple[list[str], bool]:
        once = gorun.Once()
        log: list[str] = []
        release = gorun.Chan[None]()

        async def bad() -> None:
            log.append("bad ran")
            await release.recv()
            raise ValueError("init failed")

        async def waiter() -> None:
            await once.do(bad)
            log.append("waiter returned")

        async def first() -> None:
            with pytest.raises(ValueError, match="init failed"):
                await once.do(bad)
            log.append("first raised")

        g1 = gorun.go(first())
        await _until(lambda: once._runner is not None)
        g2 = gorun.go(waiter())
        await _until(lambda: len(once._waiters) == 1)
        await release.send(None)
        await g1
        await g2
        await once.do(bad)  # done: not run again
        return sorted(log), once.done

    log, done = gorun.run(main(), procs=PROCS)
    assert log == ["bad ran", "first raised", "waiter returned"]
    assert done


def test_once_waiter_cancelled_gives_up() -> None:
    async def main() -> tuple[bool, int]:
        once = gorun.Once()
        release = gorun.Chan[None]()
        calls: list[int] = []

        async def init() -> None:
            calls.append(1)
            await release.recv()

        g1 = gorun.go(once.do(init))
        await _until(lambda: once._runner is not None)
        g2 = gorun.go(once.do(init))
        await _until(lambda: len(once._waiters) == 1)
        g2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await g2
        queued = bool(once._waiters)
        await release.send(None)
        await g1
        return queued, len(calls)

    assert gorun.run(main(), procs=PROCS) == (False, 1)


def test_once_recursive_call_raises() -> None:
    async def main() -> str:
        once = gorun.Once()

        async def init() -> None:
            await once.do(init)

        with pytest.raises(RuntimeError, match="its own fn"):
            await once.do(init)
        return repr(once)

    assert "done" in gorun.run(main(), procs=2)


# -- Group ------------------------------------------------------------------------------------


def test_group_runs_goroutines_across_workers() -> None:
    pin = _pinner(PROCS)

    async def main() -> tuple[list[int], set[int]]:
        out = gorun.Chan[tuple[int, int]](PROCS)

        async def child(i: int) -> None:
            tid = pin()
            await out.send((i * i, tid))

        async with gorun.Group() as g:
            for i in range(PROCS):
                g.go(child(i), name=f"child-{i}")
        got = [out.recv_nowait() for _ in range(PROCS)]
        return sorted(v for v, _ in got), {tid for _, tid in got}

    values, tids = gorun.run(main(), procs=PROCS)
    assert values == [0, 1, 4, 9]
    assert len(tids) == PROCS


def test_group_first_failure_cancels_siblings_and_body() -> None:
    async def main() -> tuple[list[str], list[str], int]:
        started = gorun.Chan[None](3)
        log: list[str] = []
        guard = threading.Lock()

        async def sibling(i: int) -> None:
            try:
                await started.send(None)
                await _forever()
            finally:
                with guard:
                    log.append(f"sibling {i} finally")

        async def failing() -> None:
            for _ in range(3):
                await started.recv()
            raise ValueError("child failed")

        async def body() -> None:
            async with gorun.Group() as g:
                for i in range(3):
                    g.go(sibling(i))
                g.go(failing())
                try:
                    await _forever()  # the body is aborted: the group cancels this task
                finally:
                    log.append("body aborted")

        errors = await _group_errors(body)
        await asyncio.sleep(0)  # the task is not left cancelled
        current = asyncio.current_task()
        assert current is not None
        return sorted(log), errors, current.cancelling()

    log, errors, cancelling = gorun.run(main(), procs=PROCS)
    assert log == ["body aborted", "sibling 0 finally", "sibling 1 finally", "sibling 2 finally"]
    assert errors == ["ValueError('child failed')"]
    assert cancelling == 0


def test_group_collects_every_failure() -> None:
    async def main() -> list[str]:
        barrier = gorun.WaitGroup()
        barrier.add(2)

        async def fail(i: int) -> None:
            barrier.done()
            await barrier.wait()  # both are running before either fails
            raise KeyError(i)

        async def body() -> None:
            async with gorun.Group() as g:
                g.go(fail(1))
                g.go(fail(2))

        errors = sorted(await _group_errors(body))
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0  # a failure while exiting does not cancel it
        await asyncio.sleep(0)
        return errors

    got = gorun.run(main(), procs=PROCS)
    # The first failure cancels the other; that one may have failed already.
    assert got in (["KeyError(1)"], ["KeyError(2)"], ["KeyError(1)", "KeyError(2)"])


def test_group_body_exception_cancels_children() -> None:
    async def main() -> tuple[list[str], list[str]]:
        started = gorun.Chan[None]()
        log: list[str] = []

        async def child() -> None:
            try:
                await started.send(None)
                await _forever()
            finally:
                log.append("child finally")

        async def body() -> None:
            async with gorun.Group() as g:
                g.go(child())
                await started.recv()
                raise RuntimeError("body failed")

        return log, await _group_errors(body)

    assert gorun.run(main(), procs=PROCS) == (
        ["child finally"], ["RuntimeError('body failed')"],
    )


def test_group_parent_cancelled_cancels_children() -> None:
    async def main() -> tuple[list[str], bool]:
        started = gorun.Chan[None]()
        log: list[str] = []

        async def child() -> None:
            try:
                await started.send(None)
                await _forever()
            finally:
                log.append("child finally")

        async def parent() -> None:
            async with gorun.Group() as g:
                g.go(child())
                g.go(child())
                await _forever()

        p = gorun.go(parent())
        await started.recv()
        await started.recv()
        p.cancel()
        with pytest.raises(asyncio.CancelledError):
            await p
        return log, p.cancelled()

    assert gorun.run(main(), procs=PROCS) == (["child finally", "child finally"], True)


def test_group_parent_cancelled_while_exiting() -> None:
    async def main() -> list[str]:
        started = gorun.Chan[None]()
        log: list[str] = []

        async def child() -> None:
            try:
                await started.send(None)
                await _forever()
            finally:
                log.append("child finally")

        async def parent() -> None:
            async with gorun.Group() as g:
                g.go(child())
            log.append("not reached")

        p = gorun.go(parent())
        await started.recv()  # parent is (or soon is) waiting in __aexit__
        p.cancel()
        with pytest.raises(asyncio.CancelledError):
            await p
        return log

    assert gorun.run(main(), procs=PROCS) == ["child finally"]


def test_group_limit_bounds_concurrency() -> None:
    n = 10
    pair = threading.Barrier(2, timeout=TIMEOUT)

    async def main() -> tuple[int, int]:
        guard = threading.Lock()
        state = {"running": 0, "most": 0, "ran": 0}

        gate = gorun.Chan[None]()

        async def child() -> None:
            await gate.recv_ok()  # until main has looked at the queue
            with guard:
                state["running"] += 1
                state["most"] = max(state["most"], state["running"])
            pair.wait()  # two run at once, on two workers
            await asyncio.sleep(0)
            with guard:
                state["running"] -= 1
                state["ran"] += 1

        async with gorun.Group(limit=2) as g:
            for _ in range(n):
                g.go(child())  # never blocks
            assert "running=2 queued=8 limit=2" in repr(g)
            gate.close()
        return state["most"], state["ran"]

    assert gorun.run(main(), procs=PROCS) == (2, n)


def test_group_limit_one_runs_in_order() -> None:
    async def main() -> list[int]:
        order: list[int] = []

        async def child(i: int) -> None:
            order.append(i)
            await asyncio.sleep(0)

        async with gorun.Group(limit=1) as g:
            for i in range(8):
                g.go(child(i))
        return order

    assert gorun.run(main(), procs=PROCS) == list(range(8))


def test_group_failure_drops_queued_coroutines() -> None:
    async def main() -> tuple[list[int], list[str]]:
        ran: list[int] = []

        async def child(i: int) -> None:
            ran.append(i)
            if i == 0:
                raise ValueError("first")

        async def body() -> None:
            async with gorun.Group(limit=1) as g:
                for i in range(5):
                    g.go(child(i))

        return ran, await _group_errors(body)

    assert gorun.run(main(), procs=PROCS) == ([0], ["ValueError('first')"])


def test_group_children_may_add_work_while_exiting() -> None:
    async def main() -> list[int]:
        seen: list[int] = []
        guard = threading.Lock()

        async with gorun.Group(limit=2) as g:

            async def child(depth: int) -> None:
                with guard:
                    seen.append(depth)
                if depth < 4:
                    g.go(child(depth + 1))
                    g.go(child(depth + 1))

            g.go(child(0))
        return seen

    assert sorted(gorun.run(main(), procs=PROCS)) == sorted(
        d for d in range(5) for _ in range(2**d)
    )


def test_group_go_outside_the_block_raises() -> None:
    async def noop() -> None:
        pass

    async def main() -> str:
        g = gorun.Group()
        with pytest.raises(RuntimeError, match="has not been entered"):
            g.go(noop())
        async with g:
            g.go(noop())
        with pytest.raises(RuntimeError, match="has finished"):
            g.go(noop())
        with pytest.raises(RuntimeError, match="already been entered"):
            async with g:
                pass
        with pytest.raises(TypeError):
            g.go(noop)  # type: ignore[arg-type]
        return repr(g)

    assert "finished" in gorun.run(main(), procs=2)


def test_group_go_while_cancelling_drops_the_coroutine() -> None:
    async def main() -> tuple[list[str], list[str]]:
        ran: list[str] = []

        async def late() -> None:
            ran.append("late")

        async def fail() -> None:
            raise ValueError("x")

        async def body() -> None:
            async with gorun.Group() as g:
                g.go(fail())
                try:
                    await _forever()
                except asyncio.CancelledError:
                    g.go(late())  # closed, never run; no error
                    raise

        return await _group_errors(body), ran

    assert gorun.run(main(), procs=PROCS) == (["ValueError('x')"], [])


@pytest.mark.parametrize(
    ("limit", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)],
)
def test_group_bad_limit(limit: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        gorun.Group(limit=limit)


def test_group_base_exception_group_for_base_errors() -> None:
    class Stop(BaseException):
        pass

    async def main() -> tuple[type[BaseException], list[str]]:
        async def child() -> None:
            raise Stop("stop")

        with pytest.raises(BaseExceptionGroup) as info:
            async with gorun.Group() as g:
                g.go(child())
        return type(info.value), [repr(e) for e in info.value.exceptions]

    kind, errors = gorun.run(main(), procs=2)
    assert kind is BaseExceptionGroup
    assert errors == ["Stop('stop')"]


def test_group_on_a_plain_asyncio_loop() -> None:
    async def main() -> list[int]:
        out: list[int] = []
        guard = threading.Lock()

        async def child(i: int) -> None:
            with guard:
                out.append(i)

        async with gorun.Group(limit=2) as g:
            for i in range(5):
                g.go(child(i))
        return sorted(out)

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_reprs() -> None:
    assert "WaitGroup" in repr(gorun.WaitGroup())
    assert "Mutex" in repr(gorun.Mutex())
    assert "Once" in repr(gorun.Once())
    assert "limit=3" in repr(gorun.Group(3))
