"""The drop-in entry points: a loop factory for Runner/asyncio.run, and the policy.

Here the case runs as the main task on the gorun home loop (not in a goroutine), and
its outcome must match plain ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

import gorun

pytestmark = pytest.mark.timeout(30)

Observed = tuple[list[int], str, bytes, str]
EXPECTED: Observed = ([0, 1, 4], "thread", b"ECHO\n", "TimeoutError")


async def mixed_case() -> Observed:
    """A bit of everything: TaskGroup, to_thread, streams and a timeout."""

    async def square(i: int) -> int:
        await asyncio.sleep(0)
        return i * i

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(square(i)) for i in range(3)]

    in_thread = await asyncio.to_thread(lambda: "thread")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        writer.write(b"echo\n")
        echoed = await reader.readline()
        await reader.read()
        writer.close()
        await writer.wait_closed()

    timed_out = "no timeout"
    try:
        async with asyncio.timeout(0.01):
            await asyncio.get_running_loop().create_future()
    except TimeoutError:
        timed_out = "TimeoutError"
    return [t.result() for t in tasks], in_thread, echoed, timed_out


async def on_gorun(expected_procs: int) -> tuple[Observed, bool, int, Observed]:
    """The mixed case on the home loop, then again inside a goroutine."""
    loop = asyncio.get_running_loop()
    here = await mixed_case()
    in_goroutine = await gorun.go(mixed_case(), name="dropin-case")
    return here, isinstance(loop, gorun.Loop), gorun.procs(), in_goroutine


def test_baseline_on_stock_asyncio() -> None:
    assert asyncio.run(mixed_case()) == EXPECTED


def test_runner_with_gorun_loop_factory() -> None:
    factory = functools.partial(gorun.new_event_loop, procs=2)
    with asyncio.Runner(loop_factory=factory) as runner:
        first = runner.run(on_gorun(2))
        # A Runner runs several coroutines on one loop; the runtime serves each of them.
        second = runner.run(on_gorun(2))
        loop = runner.get_loop()
        assert isinstance(loop, gorun.Loop)
        assert loop.procs == 2
    assert first == (EXPECTED, True, 2, EXPECTED)
    assert second == first
    assert loop.is_closed()


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.run() has loop_factory from Python 3.12"
)
def test_asyncio_run_with_gorun_loop_factory() -> None:
    factory = functools.partial(gorun.new_event_loop, procs=2)
    got = asyncio.run(on_gorun(2), loop_factory=factory)  # type: ignore[call-arg,unused-ignore]
    assert got == (EXPECTED, True, 2, EXPECTED)


@pytest.fixture
def restore_policy() -> Iterator[None]:
    """Put back the event-loop policy a test replaces."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.14+: policies deprecated
        previous = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(previous)


@pytest.mark.usefixtures("restore_policy")
def test_asyncio_run_under_gopolicy() -> None:
    policy = gorun.GoPolicy(procs=2)
    if sys.version_info >= (3, 14):
        with pytest.warns(DeprecationWarning, match="set_event_loop_policy"):
            asyncio.set_event_loop_policy(policy)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.set_event_loop_policy(policy)
        assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []
    got = asyncio.run(on_gorun(2))
    assert got == (EXPECTED, True, 2, EXPECTED)


def test_gorun_run_main_on_home_thread() -> None:
    async def main() -> tuple[Observed, bool, bool]:
        observed = await mixed_case()
        loop = asyncio.get_running_loop()
        return (
            observed,
            isinstance(loop, gorun.Loop),
            threading.current_thread() is threading.main_thread(),
        )

    assert gorun.run(main(), procs=3) == (EXPECTED, True, True)
