"""Executors, to_thread and call_soon_threadsafe: same on every backend."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("conformance_thread_var", default="unset")


def _scaled(x: int, *, factor: int) -> tuple[int, int]:
    return x * factor, threading.get_ident()


def test_run_in_executor_default(runner: Backend) -> None:
    async def case() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        value, ident = await loop.run_in_executor(None, functools.partial(_scaled, 7, factor=3))
        return value, ident != threading.get_ident()

    assert runner.run(case) == (21, True)


def test_run_in_executor_custom_pool(runner: Backend) -> None:
    def thread_name(x: int) -> tuple[int, str]:
        return x + 1, threading.current_thread().name

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="conformance-pool") as pool:

        async def case() -> list[tuple[int, bool]]:
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(
                *(loop.run_in_executor(pool, thread_name, i) for i in range(4))
            )
            return [(v, name.startswith("conformance-pool")) for v, name in results]

        assert runner.run(case) == [(1, True), (2, True), (3, True), (4, True)]


def test_run_in_executor_blocking_function_leaves_loop_free(runner: Backend) -> None:
    async def case() -> tuple[bool, int, str]:
        loop = asyncio.get_running_loop()
        gate = threading.Event()

        def blocking() -> str:
            if not gate.wait(10):
                raise TimeoutError("gate never opened")
            return "unblocked"

        fut = loop.run_in_executor(None, blocking)
        ticks = 0
        for _ in range(3):
            # The loop keeps serving other work while blocking() holds its thread.
            await asyncio.sleep(0)
            ticks += 1
        done_early = fut.done()
        gate.set()
        return done_early, ticks, await fut

    assert runner.run(case) == (False, 3, "unblocked")


def test_to_thread_runs_elsewhere_with_context(runner: Backend) -> None:
    def work(a: int, b: int) -> tuple[int, str, int]:
        return a + b, VAR.get(), threading.get_ident()

    async def case() -> tuple[int, str, bool, str]:
        VAR.set("from the case")
        total, seen, ident = await asyncio.to_thread(work, 2, b=40)
        return total, seen, ident != threading.get_ident(), VAR.get()

    assert runner.run(case) == (42, "from the case", True, "from the case")


def test_call_soon_threadsafe_from_plain_thread(runner: Backend) -> None:
    async def case() -> tuple[bool, bool, str]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        ran_on: list[int] = []

        def on_loop(ident: int) -> None:
            ran_on.append(threading.get_ident())
            fut.set_result(ident)

        def thread_main() -> None:
            loop.call_soon_threadsafe(on_loop, threading.get_ident())

        thread = threading.Thread(target=thread_main, name="conformance-poster")
        thread.start()
        poster = await fut
        await asyncio.to_thread(thread.join)
        return (
            poster == thread.ident,
            ran_on == [threading.get_ident()],
            "joined" if not thread.is_alive() else "alive",
        )

    assert runner.run(case) == (True, True, "joined")


def test_call_soon_threadsafe_runs_while_the_loop_is_busy(runner: Backend) -> None:
    async def case() -> bool:
        loop = asyncio.get_running_loop()
        ran = threading.Event()
        posted = threading.Event()

        def thread_main() -> None:
            loop.call_soon_threadsafe(ran.set)
            posted.set()

        thread = threading.Thread(target=thread_main, name="conformance-poster")
        thread.start()
        while not posted.is_set():  # noqa: ASYNC110 - the point: never idle, sleep(0) only
            await asyncio.sleep(0)
        spins = 0
        while not ran.is_set() and spins < 1000:
            spins += 1
            await asyncio.sleep(0)
        await asyncio.to_thread(thread.join)
        return ran.is_set() and spins <= 2

    assert runner.run(case) is True
