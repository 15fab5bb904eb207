"""A gorun loop's iteration: what its callbacks make ready may run at once, in the same
iteration, when the select before it would have nothing to do (``Parking.run_on``). These
check that nothing that select would have done is skipped: a loop that stops, callbacks
posted from other threads, I/O and timers (tests/conformance/test_loop.py has those two,
on every backend)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

import gorun
from gorun._thread_state import current_worker

TIMEOUT = 10.0
pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "factory",
    [asyncio.new_event_loop, lambda: gorun.new_event_loop(procs=1),
     lambda: gorun.new_event_loop(procs=2)],
    ids=["asyncio", "gorun-1", "gorun-2"],
)
def test_stop_ends_the_loop_after_the_current_batch(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # asyncio: "stop() ... will run the current batch of callbacks and then exit.
    # Callbacks scheduled by callbacks will not run in this case; they will run the next
    # time run_forever() is called."
    loop = factory()
    order: list[str] = []

    def first() -> None:
        order.append("first")
        loop.call_soon(order.append, "second")
        loop.stop()

    try:
        loop.call_soon(first)
        loop.run_forever()
        after_stop = list(order)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert after_stop == ["first"]
    assert order == ["first", "second"]


@pytest.mark.parametrize("procs", [1, 2])
def test_callbacks_posted_from_a_thread_run_while_two_goroutines_talk(procs: int) -> None:
    # Two goroutines of one loop trade messages, each making the other ready, with no
    # file or timer on that loop: a callback another thread posts to the loop's worker
    # must still run (the pair stops when it has).
    async def main() -> list[str]:
        worker = current_worker()
        assert worker is not None
        ping: gorun.Chan[int | None] = gorun.Chan()
        pong: gorun.Chan[int] = gorun.Chan()
        seen: list[str] = []
        talking = threading.Event()

        async def echo() -> None:
            while (value := await ping.recv()) is not None:
                await pong.send(value)

        def poster() -> None:
            assert talking.wait(TIMEOUT)
            assert worker.post(seen.append, "posted")

        g = gorun.go(echo(), local=True)
        thread = threading.Thread(target=poster)
        thread.start()
        n = 0
        while not seen:
            await ping.send(n)
            await pong.recv()
            n += 1
            talking.set()
        await ping.send(None)
        await g
        thread.join(TIMEOUT)
        return seen

    assert gorun.run(main(), procs=procs) == ["posted"]
