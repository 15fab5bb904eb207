"""Sleeping, task identity, contextvars, errors and async generators: same on every backend."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncGenerator

import pytest

import gorun

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("conformance_var", default="unset")


def test_sleep_zero_interleaves_tasks_round_robin(runner: Backend) -> None:
    async def case() -> list[str]:
        order: list[str] = []

        async def ticker(tag: str) -> None:
            for i in range(3):
                order.append(f"{tag}{i}")
                await asyncio.sleep(0)

        await asyncio.gather(ticker("a"), ticker("b"))
        return order

    assert runner.run(case) == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_sleep_small_resumes_and_returns_result(runner: Backend) -> None:
    async def case() -> list[str]:
        order: list[str] = []
        woke = asyncio.Event()

        async def sleeper() -> None:
            order.append("sleeping")
            order.append(await asyncio.sleep(0.001, result="slept"))
            woke.set()

        task = asyncio.create_task(sleeper())
        order.append("waiting")
        await woke.wait()
        order.append("woken")
        await task
        return order

    assert runner.run(case) == ["waiting", "sleeping", "slept", "woken"]


def test_case_raising_propagates_same_exception_object(runner: Backend) -> None:
    error = ValueError("boom from case")

    async def case() -> None:
        await asyncio.sleep(0)
        raise error

    with pytest.raises(ValueError, match="boom from case") as excinfo:
        runner.run(case)
    assert excinfo.value is error


def test_child_exception_propagates_to_awaiter(runner: Backend) -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise KeyError("child")

    async def case() -> str:
        try:
            await runner.spawn(failing(), name="failing-child")
        except KeyError as exc:
            return repr(exc)
        return "no error"

    assert runner.run(case) == "KeyError('child')"


def test_current_task_is_named_task(runner: Backend) -> None:
    # gorun: the name given to go(); asyncio: the name given to create_task().
    async def child() -> tuple[bool, str, bool]:
        task = asyncio.current_task()
        assert task is not None
        return (
            isinstance(task, asyncio.Task),
            task.get_name(),
            task.get_loop() is asyncio.get_running_loop(),
        )

    async def case() -> tuple[tuple[bool, str, bool], bool]:
        me = asyncio.current_task()
        return await runner.spawn(child(), name="x"), isinstance(me, asyncio.Task)

    assert runner.run(case) == ((True, "x", True), True)


def test_case_task_name_on_gorun_is_goroutine_name(runner: Backend) -> None:
    async def case() -> str | None:
        task = asyncio.current_task()
        return None if task is None else task.get_name()

    name = runner.run(case)
    if runner.is_gorun:
        assert name == "conformance-case"
    else:
        assert name is not None
        assert name.startswith("Task-")


def test_all_tasks_includes_current_and_children(runner: Backend) -> None:
    async def case() -> tuple[bool, bool, bool, bool]:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        release = asyncio.Event()
        child = asyncio.create_task(release.wait())
        tasks = asyncio.all_tasks()
        seen = (me in tasks, child in tasks, all(t.get_loop() is loop for t in tasks))
        release.set()
        await child
        return (*seen, child in asyncio.all_tasks())

    assert runner.run(case) == (True, True, True, False)


def test_contextvars_copied_at_spawn(runner: Backend) -> None:
    # A child sees the spawner's values as of go()/create_task(); its own changes stay in
    # its copy, and the spawner's later changes do not reach it.
    async def child() -> tuple[str, str]:
        seen = VAR.get()
        VAR.set("child")
        return seen, VAR.get()

    async def case() -> tuple[str, tuple[str, str], str]:
        outer = VAR.get()
        VAR.set("parent")
        pending = runner.spawn(child(), name="ctx-child")
        VAR.set("parent-after-spawn")
        result = await pending
        return outer, result, VAR.get()

    def in_fresh_context() -> tuple[str, tuple[str, str], str]:
        VAR.set("outer")
        return runner.run(case)

    got = contextvars.copy_context().run(in_fresh_context)
    assert got == ("outer", ("parent", "child"), "parent-after-spawn")
    assert VAR.get() == "unset"


def test_async_generator_aclose_and_exhaustion(runner: Backend) -> None:
    async def case() -> list[object]:
        log: list[object] = []

        async def numbers() -> AsyncGenerator[int, None]:
            try:
                for i in range(4):
                    yield i
                    await asyncio.sleep(0)
            finally:
                log.append("finally")

        gen = numbers()
        first = [await anext(gen), await anext(gen)]
        await gen.aclose()
        log.append(first)
        log.append([i async for i in numbers()])
        return log

    assert runner.run(case) == ["finally", [0, 1], "finally", [0, 1, 2, 3]]


def test_abandoned_async_generator_finalized_by_shutdown(runner: Backend) -> None:
    log: list[str] = []

    async def case() -> int:
        async def numbers() -> AsyncGenerator[int, None]:
            try:
                yield 1
                yield 2
            finally:
                log.append("finalized")

        gen = numbers()
        return await anext(gen)

    assert runner.run(case) == 1
    assert log == ["finalized"]


def test_case_thread_matches_backend(runner: Backend) -> None:
    async def case() -> bool:
        return threading.current_thread() is threading.main_thread()

    assert runner.run(case) is runner.case_on_main_thread


@pytest.mark.timeout(30)
def test_gorun4_goroutines_spread_over_four_threads() -> None:
    # Each goroutine blocks its own loop thread until all four are blocked at once,
    # which can only complete if they run on four distinct threads.
    barrier = threading.Barrier(4, timeout=10)

    async def blocker() -> tuple[int, bool]:
        barrier.wait()
        return threading.get_ident(), threading.current_thread() is threading.main_thread()

    async def main() -> list[tuple[int, bool]]:
        goroutines = [gorun.go(blocker(), name=f"blocker-{i}") for i in range(4)]
        return [await g for g in goroutines]

    got = gorun.run(main(), procs=4)
    assert len({ident for ident, _ in got}) == 4
    assert sum(on_main for _, on_main in got) <= 1
    assert any(not on_main for _, on_main in got)
