"""Timeouts, wait_for, shield and cancellation bookkeeping: same on every backend."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)


def test_timeout_raises_timeout_error_not_cancelled_error(runner: Backend) -> None:
    async def case() -> tuple[str, bool, bool, int, str]:
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.current_task()
        assert task is not None
        caught = "nothing"
        try:
            async with asyncio.timeout(0.01) as scope:
                await never
        except TimeoutError:
            caught = "TimeoutError"
        except asyncio.CancelledError:
            caught = "CancelledError"
        alive = await asyncio.sleep(0, result="alive")
        return caught, scope.expired(), never.cancelled(), task.cancelling(), alive

    assert runner.run(case) == ("TimeoutError", True, True, 0, "alive")


def test_timeout_not_reached_returns_normally(runner: Backend) -> None:
    async def case() -> tuple[str, bool]:
        async with asyncio.timeout(60) as scope:
            value = await asyncio.sleep(0, result="in time")
        return value, scope.expired()

    assert runner.run(case) == ("in time", False)


def test_nested_timeouts_inner_expires_cancelling_restored(runner: Backend) -> None:
    async def case() -> list[tuple[str, object]]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        log: list[tuple[str, object]] = []
        async with asyncio.timeout(60) as outer:
            try:
                async with asyncio.timeout(0.01) as inner:
                    await loop.create_future()
            except TimeoutError:
                log.append(("inner expired", inner.expired()))
            log.append(("cancelling after inner", task.cancelling()))
            log.append(("outer still", await asyncio.sleep(0, result="running")))
        log.append(("outer expired", outer.expired()))
        log.append(("cancelling at end", task.cancelling()))
        return log

    assert runner.run(case) == [
        ("inner expired", True),
        ("cancelling after inner", 0),
        ("outer still", "running"),
        ("outer expired", False),
        ("cancelling at end", 0),
    ]


def test_cancelling_and_uncancel_on_a_task(runner: Backend) -> None:
    async def case() -> tuple[list[tuple[str, int]], str, bool]:
        started = asyncio.Event()
        log: list[tuple[str, int]] = []

        async def child() -> str:
            me = asyncio.current_task()
            assert me is not None
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append(("cancelling", me.cancelling()))
                log.append(("uncancel", me.uncancel()))
                log.append(("cancelling after uncancel", me.cancelling()))
                return "recovered"
            return "not cancelled"

        task = asyncio.create_task(child())
        await started.wait()
        task.cancel()
        result = await task
        return log, result, task.cancelled()

    assert runner.run(case) == (
        [("cancelling", 1), ("uncancel", 0), ("cancelling after uncancel", 0)],
        "recovered",
        False,
    )


def test_cancelled_sleeping_task_runs_finally(runner: Backend) -> None:
    async def case() -> tuple[list[str], tuple[object, ...], bool]:
        started = asyncio.Event()
        log: list[str] = []

        async def sleeper() -> None:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("cancelled")
                raise
            finally:
                log.append("finally")

        task = asyncio.create_task(sleeper())
        await started.wait()
        task.cancel("stop")
        args: tuple[object, ...] = ()
        try:
            await task
        except asyncio.CancelledError as exc:
            args = exc.args
        return log, args, task.cancelled()

    assert runner.run(case) == (["cancelled", "finally"], ("stop",), True)


def test_wait_for_timeout_cancels_inner(runner: Backend) -> None:
    async def case() -> tuple[str, list[str]]:
        log: list[str] = []

        async def inner() -> None:
            try:
                await asyncio.get_running_loop().create_future()
            finally:
                log.append("inner finally")

        try:
            await asyncio.wait_for(inner(), timeout=0.01)
        except TimeoutError:
            return "TimeoutError", log
        return "no timeout", log

    assert runner.run(case) == ("TimeoutError", ["inner finally"])


def test_wait_for_success(runner: Backend) -> None:
    async def case() -> tuple[int, str]:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fut.set_result("ready")
        value = await asyncio.wait_for(asyncio.sleep(0, result=5), timeout=60)
        return value, await asyncio.wait_for(fut, timeout=None)

    assert runner.run(case) == (5, "ready")


def test_shield_keeps_inner_running_when_outer_cancelled(runner: Backend) -> None:
    async def case() -> tuple[str, bool, bool, str]:
        started = asyncio.Event()
        release = asyncio.Event()

        async def work() -> str:
            started.set()
            await release.wait()
            return "inner done"

        inner = asyncio.create_task(work())

        async def waiter() -> str:
            return await asyncio.shield(inner)

        outer = asyncio.create_task(waiter())
        await started.wait()
        outer.cancel()
        outcome = "not cancelled"
        try:
            await outer
        except asyncio.CancelledError:
            outcome = "outer cancelled"
        inner_done_early = inner.done()
        release.set()
        result = await inner
        return outcome, inner_done_early, inner.cancelled(), result

    assert runner.run(case) == ("outer cancelled", False, False, "inner done")
