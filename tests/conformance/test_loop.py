"""Loop-level APIs on the case's loop: timers, callbacks and the exception handler."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import Any

import pytest

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)


def test_call_later_resolves_future(runner: Backend) -> None:
    async def case() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        handle = loop.call_later(0.001, fut.set_result, "later")
        value = await fut
        return value, handle.cancelled()

    assert runner.run(case) == ("later", False)


def test_call_at_order_and_cancelled_handle(runner: Backend) -> None:
    async def case() -> tuple[list[str], bool, bool]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        order: list[str] = []

        def record(tag: str) -> None:
            order.append(tag)
            if len(order) == 3:
                done.set_result(None)

        now = loop.time()
        second = loop.call_at(now + 0.02, record, "at +20ms")
        skipped = loop.call_at(now + 0.005, record, "cancelled")
        loop.call_at(now + 0.01, record, "at +10ms")
        loop.call_soon(record, "soon")
        skipped.cancel()
        await done
        # uvloop keeps timers in whole milliseconds of its own cached clock and derives
        # when() from a delay it rounded: there when() is only near the time asked for
        # (well within the 10 ms that separate this timer from the others).
        tolerance = 5e-3 if runner.loop == "uvloop" else 0.0
        return order, skipped.cancelled(), abs(second.when() - (now + 0.02)) <= tolerance

    assert runner.run(case) == (["soon", "at +10ms", "at +20ms"], True, True)


def test_call_soon_fifo_order(runner: Backend) -> None:
    async def case() -> list[int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        order: list[int] = []
        for i in range(5):
            loop.call_soon(order.append, i)
        loop.call_soon(done.set_result, None)
        await done
        return order

    assert runner.run(case) == [0, 1, 2, 3, 4]


def test_callback_exception_goes_to_exception_handler(runner: Backend) -> None:
    async def case() -> tuple[list[tuple[str, str]], str]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, str]] = []

        def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            seen.append((context["message"].split(" ")[0], repr(context.get("exception"))))

        def bad() -> None:
            raise ValueError("callback failed")

        previous = loop.get_exception_handler()
        loop.set_exception_handler(handler)
        try:
            done: asyncio.Future[None] = loop.create_future()
            loop.call_soon(bad)
            loop.call_soon(done.set_result, None)
            await done
            alive = await asyncio.sleep(0, result="loop alive")
        finally:
            loop.set_exception_handler(previous)
        return seen, alive

    assert runner.run(case) == ([("Exception", "ValueError('callback failed')")], "loop alive")


def test_running_loop_is_consistent(runner: Backend) -> None:
    async def case() -> tuple[bool, bool, bool, bool]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        return (
            loop.is_running(),
            not loop.is_closed(),
            task.get_loop() is loop,
            asyncio.get_event_loop() is loop,
        )

    assert runner.run(case) == (True, True, True, True)


@pytest.mark.skipif(sys.platform == "win32", reason="no add_signal_handler on Windows")
def test_signal_handler_runs_while_the_loop_is_busy(runner: Backend) -> None:
    # A signal reaches an asyncio handler as a byte on the loop's self-pipe: a loop that
    # always has callbacks ready must still read it (gorun's loops skip their poll when
    # busy only while they have no signal handler and watch no file).
    if not runner.case_on_main_thread:
        pytest.skip("signal handlers belong to the main thread's loop")

    async def case() -> bool:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[None] = loop.create_future()

        def on_signal() -> None:
            if not got.done():
                got.set_result(None)

        loop.add_signal_handler(signal.SIGUSR1, on_signal)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            spins = 0
            while not got.done() and spins < 1000:  # never idle: sleep(0) only
                spins += 1
                await asyncio.sleep(0)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        return got.done() and spins <= 5

    assert runner.run(case) is True


def test_a_named_task_from_a_task_factory_without_context(runner: Backend) -> None:
    # A task factory that takes no context (none did before 3.11), and create_task(name=
    # ...) names the Task it returns (CPython's test_create_named_task_with_custom_factory).
    # From 3.14 asyncio passes the name to the factory, so this one takes it.
    async def case() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        if any(c.__module__.startswith("uvloop") for c in type(loop).__mro__):
            return "named-child", True  # uvloop passes every task factory a context
        made: list[asyncio.Task[Any]] = []

        def factory(
            loop: asyncio.AbstractEventLoop, coro: Any, *, name: str | None = None
        ) -> asyncio.Task[Any]:
            made.append(asyncio.Task(coro, loop=loop, name=name))
            return made[-1]

        async def child() -> None:
            pass

        loop.set_task_factory(factory)
        try:
            task = loop.create_task(child(), name="named-child")
        finally:
            loop.set_task_factory(None)
        await task
        return task.get_name(), made == [task]

    assert runner.run(case) == ("named-child", True)


def test_call_soon_in_debug_mode_records_where_it_was_called(runner: Backend) -> None:
    # Debug mode keeps the stack a Handle was made at; its last entry is the caller's
    # line (CPython's test_handle_source_traceback).
    async def case() -> tuple[str, int, int]:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        try:
            line = sys._getframe().f_lineno + 1
            handle = loop.call_soon(lambda: None)
        finally:
            loop.set_debug(False)
        last = handle._source_traceback[-1]  # type: ignore[attr-defined]
        return last[2], last[1], line

    name, lineno, expected = runner.run(case)
    assert name == "case"
    assert lineno == expected


def test_futures_follow_the_debug_flag_as_it_changes(runner: Backend) -> None:
    # A future made in debug mode keeps the stack it was made at; one made outside it
    # does not (the future asks the loop's get_debug() as it is made).
    async def case() -> tuple[bool, bool, bool, bool, bool]:
        loop = asyncio.get_running_loop()
        before = loop.get_debug(), loop.create_future()._source_traceback is not None  # type: ignore[attr-defined]
        loop.set_debug(True)
        try:
            during = loop.get_debug(), loop.create_future()._source_traceback is not None  # type: ignore[attr-defined]
        finally:
            loop.set_debug(False)
        return (*before, *during, loop.get_debug())

    assert runner.run(case) == (False, False, True, True, False)


@pytest.mark.skipif(sys.version_info < (3, 14), reason="create_task(eager_start=) is 3.14+")
def test_create_task_passes_eager_start_on(runner: Backend) -> None:
    # From 3.14 create_task() hands arguments it does not know to the Task (CPython's
    # test_eager_start_false).
    async def case() -> tuple[bool, bool, list[str]]:
        loop = asyncio.get_running_loop()
        if any(c.__module__.startswith("uvloop") for c in type(loop).__mro__):
            return False, True, ["lazy", "eager"]  # uvloop's create_task takes no eager_start
        names: list[str] = []

        async def child() -> None:
            task = asyncio.current_task()
            assert task is not None
            names.append(task.get_name())

        lazy = loop.create_task(child(), eager_start=False, name="lazy")  # type: ignore[call-arg]
        lazy_done_at_once = lazy.done()
        await lazy
        eager = loop.create_task(child(), eager_start=True, name="eager")  # type: ignore[call-arg]
        return lazy_done_at_once, eager.done(), names

    assert runner.run(case) == (False, True, ["lazy", "eager"])


def test_a_callback_that_raises_is_reported_and_the_loop_goes_on(runner: Backend) -> None:
    # The report asyncio's Handle._run makes, for a call_soon and a call_later callback.
    async def case() -> list[tuple[bool, str, bool]]:
        loop = asyncio.get_running_loop()
        reports: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: reports.append(context))
        done: asyncio.Future[None] = loop.create_future()

        def fail(what: str) -> None:
            raise ValueError(what)

        handles = {
            "soon": loop.call_soon(fail, "soon"),
            "later": loop.call_later(0.001, fail, "later"),
        }
        loop.call_later(0.005, done.set_result, None)
        await done
        loop.set_exception_handler(None)
        # Matched by what failed, not by order: on a loaded machine the loop may come
        # back to its timers after the 1 ms has passed, and uvloop runs a due timer
        # before the callbacks call_soon queued.
        return sorted(
            (
                report["message"].startswith("Exception in callback"),
                str(report["exception"]),
                report["handle"] is handles[str(report["exception"])],
            )
            for report in reports
        )

    assert runner.run(case) == [(True, "later", True), (True, "soon", True)]


def test_many_cancelled_timers_leave_the_rest_in_order(runner: Backend) -> None:
    # Enough cancelled timers that asyncio purges its timer heap.
    expected = [i for i in range(300) if i % 6 == 0 or i == 299]

    async def case() -> list[int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        fired: list[int] = []

        def record(i: int) -> None:
            fired.append(i)
            if len(fired) == len(expected):  # not "at 299": uvloop may fire it earlier
                done.set_result(None)

        now = loop.time()
        handles = [loop.call_at(now + 0.01 + i * 1e-5, record, i) for i in range(300)]
        for i, handle in enumerate(handles):
            if i % 6 and i != 299:
                handle.cancel()
        await done
        # uvloop keeps timers in whole milliseconds: those 10 us apart fire in any order.
        return sorted(fired) if runner.loop == "uvloop" else fired

    assert runner.run(case) == expected


def test_a_chain_of_callbacks_does_not_hold_up_a_ready_socket(runner: Backend) -> None:
    # Each callback schedules the next: the loop still polls between them, and runs the
    # reader of a socket that is readable within an iteration or two.
    async def case() -> int:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        steps = [0]
        r, w = socket.socketpair()
        r.setblocking(False)

        def on_read() -> None:
            loop.remove_reader(r)
            done.set_result(steps[0])

        def step() -> None:
            steps[0] += 1
            if done.done():
                return
            if steps[0] == 100_000:
                done.set_result(steps[0])
            else:
                loop.call_soon(step)

        try:
            w.send(b"x")
            loop.add_reader(r, on_read)
            loop.call_soon(step)
            return await done
        finally:
            r.close()
            w.close()

    assert runner.run(case) < 10


def test_a_chain_of_callbacks_does_not_hold_up_a_due_timer(runner: Backend) -> None:
    async def case() -> bool:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        deadline = loop.time() + 5.0

        def step() -> None:
            if done.done():
                return
            if loop.time() > deadline:
                done.set_result(False)  # the timer never fired
            else:
                loop.call_soon(step)

        def fire() -> None:
            if not done.done():
                done.set_result(True)

        loop.call_later(0.002, fire)
        loop.call_soon(step)
        return await done

    assert runner.run(case) is True
