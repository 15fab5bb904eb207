"""Scheduler behaviour: spread, stealing, affinity, foreign callers, cancellation, errors."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import logging
import select
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import gorun
import gorun._selector
import gorun._wakeup

TIMEOUT = 10.0


def _busy(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def test_goroutines_spread_over_n_threads() -> None:
    # Each goroutine blocks its own loop thread until all four are blocked at once,
    # which can only happen if they run on four distinct threads.
    procs = 4
    barrier = threading.Barrier(procs, timeout=TIMEOUT)

    async def blocker() -> int:
        barrier.wait()
        return threading.get_ident()

    async def main() -> tuple[set[int], gorun.Stats]:
        gs = [gorun.go(blocker()) for _ in range(procs)]
        idents = {await g for g in gs}
        return idents, gorun.stats()

    idents, stats = gorun.run(main(), procs=procs)
    assert len(idents) == procs
    assert {w.thread_id for w in stats.workers} == idents
    assert sum(w.started for w in stats.workers) == procs


# Long enough (milliseconds) that the loop running one counts as stuck, which is what
# lets idle workers steal when the GIL is enabled (see gorun._runtime).
CPU_ITEM = 40_000


@pytest.mark.skipif(
    gorun._wakeup.GIL_ENABLED, reason="with the GIL, workers take turns (see the next test)"
)
def test_cpu_fan_out_keeps_every_worker_busy() -> None:
    async def work(i: int) -> int:
        return _busy(CPU_ITEM) + i

    async def main() -> tuple[list[int], gorun.Stats]:
        gs = [gorun.go(work(i)) for i in range(200)]
        return [await g for g in gs], gorun.stats()

    results, stats = gorun.run(main(), procs=4)
    assert results == [_busy(CPU_ITEM) + i for i in range(200)]
    started = [w.started for w in stats.workers]
    assert sum(started) == 200
    assert all(n > 0 for n in started), started
    assert sum(w.stolen for w in stats.workers) > 0
    assert len({w.thread_id for w in stats.workers}) == 4


@pytest.mark.skipif(not gorun._wakeup.GIL_ENABLED, reason="the rule applies with the GIL")
def test_with_the_gil_a_cpu_fan_out_stays_with_a_loop_that_keeps_iterating() -> None:
    # With the GIL, a second busy worker could only take turns with the first one for
    # the interpreter: goroutines whose loop comes back to its select between them stay
    # there (the run permit hands turns over at selects; _permit).
    async def work(i: int) -> int:
        return _busy(CPU_ITEM) + i

    async def main() -> tuple[list[int], gorun.Stats]:
        gs = [gorun.go(work(i)) for i in range(100)]
        return [await g for g in gs], gorun.stats()

    # A loop whose thread the OS stops running for a while (an oversubscribed machine)
    # looks blocked to the monitor, which cannot tell the two apart by the thread's CPU
    # time, and its goroutines are then rightly taken: a run may steal now and then. So
    # one run in three must steal nothing; a runtime that steals from a loop that
    # computes and iterates does so in every run.
    stolen = []
    for _ in range(3):
        results, stats = gorun.run(main(), procs=4)
        assert results == [_busy(CPU_ITEM) + i for i in range(100)]
        assert sum(w.started for w in stats.workers) == 100
        stolen.append(sum(w.stolen for w in stats.workers))
        if stolen[-1] == 0:
            break
    assert stolen[-1] == 0, stolen


def _current_runtime() -> Any:
    from gorun._current import current_runtime

    runtime = current_runtime()
    assert runtime is not None
    return runtime


@pytest.mark.skipif(not gorun._wakeup.GIL_ENABLED, reason="the rule applies with the GIL")
def test_with_the_gil_a_loop_that_keeps_iterating_keeps_its_goroutines() -> None:
    # A backlog alone does not make thieves take goroutines from a loop that keeps
    # coming back to its select: they could not run in parallel with it anyway. The
    # stuck threshold is raised so that no pause of this process (a loaded machine)
    # makes the loop look stuck; the grace is dropped so that the backlog alone would
    # be stealable.
    async def item(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> tuple[list[int], gorun.Stats]:
        runtime = _current_runtime()
        runtime.steal_grace = runtime.runnext_grace = 0.0
        runtime.stuck_after = 3600.0
        gs = [gorun.go(item(i)) for i in range(500)]
        return [await g for g in gs], gorun.stats()

    results, stats = gorun.run(main(), procs=4)
    assert results == list(range(500))
    assert [w.started for w in stats.workers] == [500, 0, 0, 0]
    assert sum(w.stolen for w in stats.workers) == 0


def test_idle_workers_take_a_backlog_from_a_loop_that_counts_as_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same fan-out with no stuck threshold at all (every loop counts as stuck at
    # once, as a backlog alone does on a free-threaded build): idle workers take their
    # share. Without the run permit: with it, a loop that computes is never stuck.
    monkeypatch.setenv("GORUN_GIL_PERMIT", "0")
    async def item(i: int) -> int:
        await asyncio.sleep(0)
        return _busy(CPU_ITEM // 10) + i

    async def main() -> gorun.Stats:
        runtime = _current_runtime()
        runtime.steal_grace = runtime.runnext_grace = 0.0
        runtime.stuck_after = -1.0
        gs = [gorun.go(item(i)) for i in range(500)]
        for i, g in enumerate(gs):
            assert await g == _busy(CPU_ITEM // 10) + i
        return gorun.stats()

    stats = gorun.run(main(), procs=4)
    assert sum(w.stolen for w in stats.workers) > 0


def test_idle_workers_steal_goroutines_queued_behind_a_blocked_loop() -> None:
    # main spawns goroutines and then blocks its own loop until they have run: only
    # other workers, stealing from main's queue, can run them.
    async def main() -> gorun.Stats:
        events = [threading.Event() for _ in range(3)]

        async def mark(ev: threading.Event) -> None:
            ev.set()

        gs = [gorun.go(mark(ev)) for ev in events]
        for ev in events:
            assert ev.wait(TIMEOUT), "a queued goroutine was never stolen"
        for g in gs:
            await g
        return gorun.stats()

    stats = gorun.run(main(), procs=3)
    assert stats.workers[0].started == 0
    assert sum(w.stolen for w in stats.workers) >= 3


def test_a_spawned_partner_stays_on_its_spawners_worker() -> None:
    async def child() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    async def parent() -> bool:
        here = threading.get_ident()
        same = True
        for _ in range(20):
            same = same and await gorun.go(child()) == here
        return same

    async def main() -> list[bool]:
        return [await gorun.go(parent()) for _ in range(3)]

    assert gorun.run(main(), procs=4) == [True, True, True]


def test_go_from_a_foreign_asyncio_loop_uses_the_default_runtime() -> None:
    async def child(x: int) -> tuple[int, str]:
        await asyncio.sleep(0)
        return x * 2, threading.current_thread().name

    async def main() -> list[tuple[int, str]]:
        assert not isinstance(asyncio.get_running_loop(), gorun.Loop)
        gs = [gorun.go(child(i)) for i in range(20)]
        return list(await asyncio.gather(*gs))

    results = asyncio.run(main())
    assert [r for r, _ in results] == [i * 2 for i in range(20)]
    assert all(name.startswith("gorun-worker-") for _, name in results)


def test_go_from_a_plain_thread_and_wait() -> None:
    async def child() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    out: list[Any] = []

    def plain() -> None:
        g = gorun.go(child())
        out.append(g.wait(TIMEOUT))
        out.append(g.done())

    t = threading.Thread(target=plain)
    t.start()
    t.join(TIMEOUT)
    assert out[0].startswith("gorun-worker-")
    assert out[1] is True


def test_wait_times_out_and_then_succeeds() -> None:
    release = threading.Event()

    async def slow() -> int:
        await asyncio.to_thread(release.wait, TIMEOUT)
        return 7

    g = gorun.go(slow())
    with pytest.raises(TimeoutError):
        g.wait(0.01)
    release.set()
    assert g.wait(TIMEOUT) == 7


def test_wait_raises_the_goroutines_exception() -> None:
    async def boom() -> None:
        raise KeyError("k")

    g = gorun.go(boom())
    with pytest.raises(KeyError):
        g.wait(TIMEOUT)
    assert isinstance(g.exception(), KeyError)


def test_cancel_from_another_thread_runs_finally() -> None:
    started = threading.Event()
    cleaned = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            cleaned.set()

    async def main() -> tuple[bool, bool, str]:
        g = gorun.go(forever())
        await asyncio.to_thread(started.wait, TIMEOUT)
        result: list[bool] = []
        t = threading.Thread(target=lambda: result.append(g.cancel("stop it")))
        t.start()
        t.join(TIMEOUT)
        try:
            await g
        except asyncio.CancelledError as exc:
            return result[0], g.cancelled(), str(exc.args[0] if exc.args else "")
        raise AssertionError("await did not raise CancelledError")

    assert gorun.run(main(), procs=2) == (True, True, "stop it")
    assert cleaned.is_set()


def test_cancel_before_start_never_runs_the_coroutine() -> None:
    ran: list[bool] = []

    async def never() -> None:
        ran.append(True)

    async def main() -> tuple[bool, bool, bool]:
        g = gorun.go(never())  # queued: main has not yielded yet
        first = g.cancel()
        again = g.cancel()
        with pytest.raises(asyncio.CancelledError):
            await g
        return first, again, g.cancelled()

    with warnings_as_errors():
        assert gorun.run(main(), procs=1) == (True, False, True)
        gc.collect()
    assert ran == []


def test_an_awaiter_cancelled_while_waiting_cancels_the_goroutine() -> None:
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.get_running_loop().create_future()

    async def main() -> bool:
        g = gorun.go(forever())
        await asyncio.to_thread(started.wait, TIMEOUT)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await g
        return g.cancelled()

    assert gorun.run(main(), procs=2) is True


def test_awaiting_across_workers_returns_results_and_exceptions() -> None:
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    async def far(fail: bool) -> int:
        barrier.wait()  # forces this goroutine and its awaiter onto two threads
        if fail:
            raise ValueError("far")
        return threading.get_ident()

    async def near(fail: bool) -> tuple[int, Any]:
        g = gorun.go(far(fail))
        barrier.wait()
        try:
            return threading.get_ident(), await g
        except ValueError as exc:
            return threading.get_ident(), exc

    async def main() -> list[tuple[int, Any]]:
        out = []
        for fail in (False, True):
            out.append(await gorun.go(near(fail)))
        return out

    (here1, there), (_here2, exc) = gorun.run(main(), procs=3)
    assert here1 != there
    assert isinstance(exc, ValueError)
    assert str(exc) == "far"


def test_contextvars_are_copied_at_go() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def child() -> str:
        seen = var.get()
        var.set("child")
        return seen

    async def main() -> tuple[str, str]:
        var.set("parent")
        seen = await gorun.go(child())
        return seen, var.get()

    assert gorun.run(main(), procs=2) == ("parent", "parent")


def test_goroutine_name_id_and_current_task() -> None:
    async def child() -> str:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name()

    async def main() -> None:
        g = gorun.go(child(), name="fetcher")
        assert await g == "fetcher"
        assert g.name == "fetcher"
        h = gorun.go(child())
        assert h.id > g.id
        assert await h == f"goroutine-{h.id}"
        assert "fetcher" in repr(g)
        assert "finished" in repr(g)

    gorun.run(main(), procs=2)


def test_goroutine_ids_count_up_whether_named_or_not() -> None:
    # An unnamed goroutine's id is read back from its name; a named one keeps its own.
    # Names that look like another goroutine's, and ids past the 256 lock stripes
    # (which an unnamed goroutine's handle keeps instead of its id), change nothing.
    async def nothing() -> None:
        pass

    async def main() -> None:
        names = [None, "goroutine-1", None, "", "goroutine-x"] * 120
        gs = [gorun.go(nothing(), name=name) for name in names]
        await asyncio.gather(*gs)
        ids = [g.id for g in gs]
        assert ids == list(range(ids[0], ids[0] + len(gs)))
        for g, name in zip(gs, names, strict=True):
            assert g.name == (f"goroutine-{g.id}" if name is None else name)
            assert f"id={g.id} " in repr(g)
        # Renaming keeps the id, even for a goroutine whose id was read from its name.
        for g in gs[:5]:
            before = g.id
            g.name = "renamed"
            assert (g.id, g.name) == (before, "renamed")
        with pytest.raises(TypeError, match="name must be a str"):
            gs[0].name = 5  # type: ignore[assignment]

    gorun.run(main(), procs=2)


@pytest.mark.parametrize("outcome", ["value", "error", "cancelled"])
def test_awaiting_a_goroutine_whose_task_ended_before_its_done_callback_ran(
        outcome: str) -> None:
    # The await takes its outcome from the Task, with no wait: the handle's done
    # callback, which would record it, is still queued behind the awaiter.
    async def quick() -> int:
        if outcome == "error":
            raise ValueError("quick")
        return 7

    async def main() -> tuple[bool, object, bool]:
        g = gorun.go(quick(), local=True)
        if outcome == "cancelled":
            g.cancel("stop")  # before its first step: the step raises CancelledError
        await asyncio.sleep(0)  # its step runs, then this resumes, then its callbacks
        task = g._task
        assert task is not None
        between = task.done() and not g.done()
        try:
            got: object = await g
        except (ValueError, asyncio.CancelledError) as exc:
            got = exc
        return between, got, g.done()

    between, got, done = gorun.run(main(), procs=1)
    assert between
    assert done
    if outcome == "value":
        assert got == 7
    elif outcome == "error":
        assert isinstance(got, ValueError)
        assert str(got) == "quick"
    else:
        assert isinstance(got, asyncio.CancelledError)
        assert got.args == ("stop",)


def test_local_goroutines_stay_on_the_callers_loop() -> None:
    async def main() -> bool:
        queue: asyncio.Queue[int] = asyncio.Queue()  # bound to this loop

        async def consumer() -> tuple[int, int]:
            return await queue.get(), threading.get_ident()

        g = gorun.go(consumer(), local=True)
        queue.put_nowait(5)
        value, ident = await g
        return value == 5 and ident == threading.get_ident()

    assert gorun.run(main(), procs=4) is True


def test_go_from_to_thread_joins_the_callers_runtime() -> None:
    async def child() -> int:
        return gorun.procs()

    def from_thread() -> int:
        return gorun.go(child()).wait(TIMEOUT)

    async def main() -> int:
        return await asyncio.to_thread(from_thread)

    assert gorun.run(main(), procs=3) == 3


def test_num_goroutine_counts_live_goroutines() -> None:
    async def main() -> tuple[int, int]:
        gate = asyncio.Event()

        async def wait_gate() -> None:
            await gate.wait()

        gs = [gorun.go(wait_gate(), local=True) for _ in range(5)]
        during = gorun.num_goroutine()
        gate.set()
        for g in gs:
            await g
        return during, gorun.num_goroutine()

    assert gorun.run(main(), procs=2) == (5, 0)


def test_add_done_callback_runs_on_the_registering_loop() -> None:
    async def main() -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[tuple[bool, str]] = loop.create_future()
        barrier = threading.Barrier(2, timeout=TIMEOUT)

        async def far() -> None:
            barrier.wait()

        g = gorun.go(far())
        g.add_done_callback(
            lambda h: fired.set_result((asyncio.get_running_loop() is loop, h.name))
        )
        await asyncio.to_thread(barrier.wait)
        return await fired

    ok, name = gorun.run(main(), procs=2)
    assert ok
    assert name.startswith("goroutine-")


def test_add_done_callback_after_done_still_fires() -> None:
    async def quick() -> int:
        return 1

    g = gorun.go(quick())
    assert g.wait(TIMEOUT) == 1
    seen: list[int] = []
    g.add_done_callback(lambda h: seen.append(h.result()))
    assert seen == [1]


def test_never_retrieved_exception_is_reported() -> None:
    reports: list[dict[str, Any]] = []

    async def boom() -> None:
        raise ValueError("lost")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: reports.append(ctx))
        done = asyncio.Event()
        g = gorun.go(boom())
        g.add_done_callback(lambda _: done.set())
        await done.wait()
        del g
        gc.collect()

    gorun.run(main(), procs=2)
    assert len(reports) == 1
    assert reports[0]["message"] == "Goroutine exception was never retrieved"
    assert isinstance(reports[0]["exception"], ValueError)


def test_a_failing_callback_is_reported_and_the_worker_keeps_serving() -> None:
    reports: list[dict[str, Any]] = []

    async def poison() -> int:
        asyncio.get_running_loop().call_soon(lambda: 1 / 0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return threading.get_ident()

    async def main() -> bool:
        asyncio.get_running_loop().set_exception_handler(lambda _l, c: reports.append(c))
        barrier = threading.Barrier(2, timeout=TIMEOUT)

        async def pinned() -> int:
            barrier.wait()
            return await gorun.go(poison())  # runs beside it, on the same worker

        g = gorun.go(pinned())
        barrier.wait()  # blocks this loop: pinned must run on the other worker
        first = await g
        second = await gorun.go(poison())
        return first != threading.get_ident() and isinstance(second, int)

    assert gorun.run(main(), procs=2) is True
    assert any(isinstance(r.get("exception"), ZeroDivisionError) for r in reports)


@pytest.mark.parametrize("poll", ["epoll inline", "selector.select"])
def test_a_flood_of_wake_ups_runs_every_callback_and_the_worker_parks_again(
    poll: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each call_soon_threadsafe writes a byte to the loop's self-pipe. A parked worker
    # reads the bytes itself, more than one read takes here: no callback may be lost,
    # and the worker must come to rest, parked with nothing left to read. Both ways of
    # polling: epoll's, inline (Linux), and any other selector's select().
    if poll == "epoll inline" and gorun._selector._epoll_poll is None:
        pytest.skip("the default selector is not epoll")
    if poll == "selector.select":
        monkeypatch.setattr(gorun._selector, "_epoll_poll", None)
    n = 20_000

    async def main() -> tuple[int, bool]:
        home = asyncio.get_running_loop()
        assert isinstance(home, gorun.Loop)
        worker = home.runtime.workers[1]
        if not worker.parks_in_selector:
            pytest.skip("uvloop workers have no self-pipe of gorun's")
        loop = worker.loop
        wake_sock: Any = getattr(loop, "_ssock")  # noqa: B009 - private, untyped
        ran = [0]
        all_ran = threading.Event()

        def bump() -> None:
            ran[0] += 1
            if ran[0] == n:
                all_ran.set()

        def flood() -> None:
            for _ in range(n):
                loop.call_soon_threadsafe(bump)

        def at_rest() -> bool:
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                if worker.parked and not select.select([wake_sock], [], [], 0)[0]:
                    return True
                time.sleep(0.001)
            return False

        await asyncio.to_thread(flood)
        await asyncio.to_thread(all_ran.wait, TIMEOUT)
        return ran[0], await asyncio.to_thread(at_rest)

    assert gorun.run(main(), procs=2) == (n, True)


def test_debug_mode_reaches_every_worker() -> None:
    procs = 3
    barrier = threading.Barrier(procs, timeout=TIMEOUT)

    async def probe() -> bool:
        barrier.wait()
        return asyncio.get_running_loop().get_debug()

    async def main() -> list[bool]:
        gs = [gorun.go(probe()) for _ in range(procs)]
        return [await g for g in gs]

    assert gorun.run(main(), procs=procs, debug=True) == [True] * procs


def test_a_uvloop_worker_blocked_with_its_own_spawn_queued_is_not_woken_as_idle() -> None:
    # A uvloop worker counts itself parked from a tick that found nothing to start until
    # its next. main's worker does so after starting `first`; then main spawns `second`
    # and blocks its loop. The monitor finds `second` stuck and wakes an idle worker to
    # take it: that must not be main's own worker, which is flagged parked but cannot
    # run (it would hold the one token for looking, and nobody else would be woken).
    pytest.importorskip("uvloop")
    ran = threading.Event()

    async def first() -> None:
        pass

    async def second() -> None:
        ran.set()

    async def main() -> bool:
        taken = True
        for _ in range(20):
            ran.clear()
            await gorun.go(first())
            await asyncio.sleep(0)
            g = gorun.go(second())
            taken = taken and ran.wait(TIMEOUT)  # blocks this loop, second queued
            await g
        return taken

    assert gorun.run(main(), procs=2, loop="uvloop"), "the spawn was never taken"


def test_uvloop_means_every_loop_is_uvloop() -> None:
    # loop="uvloop": main and every goroutine it starts run on uvloop loops, the home
    # loop included (which is still a gorun.Loop).
    uvloop = pytest.importorskip("uvloop")
    procs = 3

    async def probe() -> bool:
        await asyncio.sleep(0)
        return isinstance(asyncio.get_running_loop(), uvloop.Loop)

    async def main() -> tuple[bool, bool, list[bool], list[str], int]:
        home = asyncio.get_running_loop()
        gs = [gorun.go(probe()) for _ in range(40)]
        local = [gorun.go(probe(), local=True) for _ in range(5)]
        on_uvloop = [await g for g in gs + local]
        stats = gorun.stats()
        return (
            isinstance(home, uvloop.Loop),
            isinstance(home, gorun.Loop),
            on_uvloop,
            [w.loop for w in stats.workers],
            sum(w.started for w in stats.workers[1:]),
        )

    home_uv, home_gorun, on_uvloop, kinds, elsewhere = gorun.run(
        main(), procs=procs, loop="uvloop"
    )
    assert (home_uv, home_gorun) == (True, True)
    assert on_uvloop == [True] * 45
    assert kinds == ["uvloop"] * procs
    print(f"{elsewhere} of 40 goroutines started on the other workers")


@pytest.mark.parametrize("how", ["env", "factory", "Loop"])
def test_uvloop_from_every_entry_point(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[bool, bool]:
        g = gorun.go(asyncio.sleep(0, asyncio.get_running_loop()))
        return isinstance(await g, uvloop.Loop), isinstance(
            asyncio.get_running_loop(), gorun.Loop
        )

    if how == "env":
        monkeypatch.setenv("GORUN_LOOP", "uvloop")
        assert gorun.run(main(), procs=2) == (True, True)
        return
    factory: Any = (
        functools.partial(gorun.new_event_loop, procs=2, loop="uvloop")
        if how == "factory"
        else functools.partial(gorun.Loop, 2, loop="uvloop")
    )
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(main()) == (True, True)


def test_a_subclass_of_loop_is_made_of_the_kind_asked_for() -> None:
    class Mine(gorun.Loop):
        def marker(self) -> str:
            return "mine"

    loop = Mine(1, loop="asyncio")
    try:
        assert isinstance(loop, Mine)
        assert isinstance(loop, asyncio.BaseEventLoop)
        assert loop.marker() == "mine"
        assert loop.run_until_complete(asyncio.sleep(0, 5)) == 5
    finally:
        loop.close()
    second = Mine(1, loop="asyncio")
    second.close()
    assert type(second) is type(loop)  # made once per kind


def test_uvloop_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now fails
    with pytest.raises(RuntimeError, match=r"needs uvloop, which is not installed: pip install"):
        gorun.new_event_loop(procs=2, loop="uvloop")
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="needs uvloop"):
        gorun.run(coro, procs=2, loop="uvloop")
    monkeypatch.setenv("GORUN_LOOP", "uvloop")
    with pytest.raises(RuntimeError, match="GORUN_LOOP='uvloop' needs uvloop"):
        gorun.Loop(2)


@contextlib.contextmanager
def warnings_as_errors() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_a_worker_loops_call_soon_makes_the_handle_asyncio_makes() -> None:
    # WorkerLoop.call_soon fills a Handle's fields itself, without Handle.__init__: a
    # field that a new Python version adds would be missing, and this test says which.
    def callback(x: int) -> None:
        raise AssertionError("cancelled before it ran")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, gorun._selector.WorkerLoop)
        ctx = contextvars.copy_context()
        ours = loop.call_soon(callback, 1, context=ctx)
        theirs = asyncio.Handle(callback, (1,), loop, ctx)
        ours.cancel()
        theirs.cancel()
        assert type(ours) is asyncio.Handle
        for field in asyncio.Handle.__slots__:
            if field != "__weakref__":
                assert getattr(ours, field) == getattr(theirs, field), field
        assert repr(ours) == repr(theirs)
        await asyncio.sleep(0)

    gorun.run(main(), procs=1)


def test_a_worker_queues_its_tick_as_one_reused_handle() -> None:
    # The tick is queued by appending one Handle, made once per worker, to the loop's
    # ready queue (never twice at a time), and it starts what was queued each time.
    from gorun._compat import DirectHandle

    async def child(i: int) -> int:
        return i

    async def main() -> None:
        loop: Any = asyncio.get_running_loop()
        worker = loop._gorun_worker
        seen: list[Any] = []
        for round_ in range(3):
            handles = [gorun.go(child(i)) for i in range(3)]
            ticks = [h for h in loop._ready if type(h) is DirectHandle]
            assert len(ticks) == 1
            seen.append(ticks[0])
            assert [await h for h in handles] == [0, 1, 2], round_
        assert seen[0] is seen[1] is seen[2]
        assert seen[0]._callback == worker.tick
        assert "tick" in repr(seen[0])

    gorun.run(main(), procs=1)


@pytest.mark.parametrize("debug", [False, True])
def test_a_direct_handle_runs_and_reports_its_failure_as_a_handle_does(debug: bool) -> None:
    from gorun._compat import DirectHandle

    reports: list[dict[str, Any]] = []
    ran: list[int] = []

    def boom() -> None:
        ran.append(1)
        raise ValueError("from the callback")

    async def main() -> None:
        loop: Any = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _l, c: reports.append(c))
        handle = DirectHandle(boom, loop)
        theirs = asyncio.Handle(boom, (), loop, contextvars.Context())
        ours_repr, _, ours_at = repr(handle).partition(" created at ")
        theirs_repr, _, theirs_at = repr(theirs).partition(" created at ")
        assert ours_repr.replace("DirectHandle", "Handle", 1) == theirs_repr
        # In debug mode, where it was made: here (DirectHandle's own frame dropped).
        assert bool(ours_at) == bool(theirs_at) == debug
        assert ours_at.partition(":")[0] == theirs_at.partition(":")[0]
        for _ in range(2):  # the same handle, queued again once it has run
            loop._ready.append(handle)
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    gorun.run(main(), procs=1, debug=debug)
    assert ran == [1, 1]
    assert [type(r["exception"]) for r in reports] == [ValueError, ValueError]
    assert all(r["message"].startswith("Exception in callback") for r in reports)
    assert all(type(r["handle"]).__name__ == "DirectHandle" for r in reports)


def test_a_worker_parks_when_its_selector_watches_no_file_at_all() -> None:
    # Parking polls epoll for as many events as the selector has files, and epoll
    # refuses to wait for none: a loop whose self-pipe reader was removed (asyncio's own
    # selector copes with that too) must still sleep and wake on its timers.
    async def main() -> None:
        loop: Any = asyncio.get_running_loop()
        fd = loop._ssock.fileno()
        assert loop.remove_reader(fd)
        try:
            await asyncio.sleep(0.01)
        finally:
            loop._add_reader(fd, loop._read_from_self)

    gorun.run(main(), procs=1)


@pytest.mark.parametrize("procs", [1, 2])
def test_goroutines_start_through_a_task_factory_that_takes_no_context(procs: int) -> None:
    # A task factory written before 3.11 takes (loop, coro): goroutines started on a loop
    # that has one still start, through it, keep their names and see their runtime, on
    # every Python (3.14 would hand a name= to the factory).
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop)
        made.append("factory")
        return task

    async def child() -> tuple[int, str]:
        task = asyncio.current_task()
        assert task is not None
        return gorun.procs(), task.get_name()

    async def main() -> list[tuple[int, str]]:
        asyncio.get_running_loop().set_task_factory(factory)
        return [await gorun.go(child(), name=f"child-{i}", local=True) for i in range(3)]

    assert gorun.run(main(), procs=procs) == [(procs, f"child-{i}") for i in range(3)]
    assert made.count("factory") >= 3


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
@pytest.mark.parametrize("procs", [1, 2])
def test_an_eager_task_factory_on_every_loop(procs: int) -> None:
    # With asyncio.eager_task_factory, a Task's first step runs inside create_task, before
    # its loop runs: asyncio.run's shutdown coroutines start that way. Goroutines run,
    # and the runtime shuts down cleanly, leaving no thread behind.
    async def child(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> list[int]:
        factory = asyncio.eager_task_factory  # type: ignore[attr-defined,unused-ignore]
        asyncio.get_running_loop().set_task_factory(factory)
        return list(await asyncio.gather(*[gorun.go(child(i)) for i in range(10)]))

    before = threading.active_count()
    with asyncio.Runner(loop_factory=functools.partial(gorun.new_event_loop, procs=procs)) as r:
        assert r.run(main()) == list(range(10))
    assert threading.active_count() == before


@pytest.mark.parametrize("procs", [1, 2])
def test_a_callback_queued_as_a_goroutine_starts_runs_once_beside_its_first_step(
    monkeypatch: pytest.MonkeyPatch, procs: int
) -> None:
    # A tick runs a started goroutine's first step at once (eager start), taking it off
    # the loop's ready queue. A callback that lands on that queue right after the Task's
    # step, as another thread's call_soon_threadsafe can, must stay queued and run once,
    # and the step must run once too.
    from gorun._goroutine import Goroutine

    start_on = Goroutine._start_on
    landed: list[str] = []

    def start_then_land(self: Goroutine[Any], worker: Any) -> Any:
        task = start_on(self, worker)
        worker.loop.call_soon(landed.append, "landed")
        return task

    async def main() -> tuple[list[str], list[str]]:
        steps: list[str] = []

        async def child() -> None:
            steps.append("first step")
            await asyncio.sleep(0)
            steps.append("second step")

        monkeypatch.setattr(Goroutine, "_start_on", start_then_land)
        g = gorun.go(child())
        await g
        monkeypatch.setattr(Goroutine, "_start_on", start_on)
        for _ in range(3):
            await asyncio.sleep(0)
        return steps, landed

    steps, landed = gorun.run(main(), procs=procs)
    assert steps == ["first step", "second step"]
    assert landed == ["landed"]


def test_running_loop_is_asyncios_answer_on_every_kind_of_thread() -> None:
    # gorun's own running_loop() answers from the thread's worker where one runs (a
    # faster lookup on 3.11), and as asyncio does everywhere else: before and after a
    # runtime, on a plain asyncio loop on the same thread, and on a plain thread.
    from gorun._thread_state import running_loop

    def pair() -> tuple[object, object]:
        try:
            mine: object = asyncio.get_running_loop()
        except RuntimeError:
            mine = None
        return running_loop(), mine

    async def on_worker() -> tuple[object, object]:
        return pair()

    async def main() -> list[tuple[object, object]]:
        found = [pair(), await gorun.go(on_worker()), await asyncio.to_thread(pair)]
        elsewhere = gorun.go(on_worker())  # may run on either worker
        found.append(await elsewhere)
        return found

    before = pair()
    inside = gorun.run(main(), procs=2)
    after = pair()

    async def plain() -> tuple[object, object]:
        return pair()

    on_asyncio = asyncio.run(plain())
    assert before == (None, None)
    assert after == (None, None)
    for got, expected in [*inside, on_asyncio]:
        assert got is expected
    assert inside[0][0] is not None
    assert inside[2] == (None, None)  # to_thread's plain thread
    assert on_asyncio[0] is not None


def test_a_goroutine_nobody_holds_lives_until_it_is_done(caplog: pytest.LogCaptureFixture) -> None:
    # A goroutine whose handle was dropped, waiting on a future nothing else references,
    # is garbage to the collector unless gorun holds it: it must live on (and be listed),
    # be cancelled at shutdown, and run its finally block, as Go keeps a blocked
    # goroutine. asyncio would log "Task was destroyed but it is pending!".
    from gorun._current import current_runtime
    from gorun._dump import live_goroutines

    cleaned: list[str] = []

    async def forever(parked: asyncio.Semaphore, home: asyncio.AbstractEventLoop) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        # Runs after this step, which parks on fut: then tell main.
        loop.call_soon(home.call_soon_threadsafe, parked.release)
        try:
            await fut
        finally:
            cleaned.append("finally")

    async def main() -> tuple[int, list[str]]:
        parked = asyncio.Semaphore(0)
        for _ in range(3):
            gorun.go(forever(parked, asyncio.get_running_loop()), name="dropped")
        for _ in range(3):
            await parked.acquire()
        gc.collect()
        rt = current_runtime()
        assert rt is not None
        return gorun.num_goroutine(), [g.name for g in live_goroutines(rt)]

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert gorun.run(main(), procs=2) == (3, ["dropped"] * 3)
    assert cleaned == ["finally"] * 3
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]
