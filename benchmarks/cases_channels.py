"""Unbuffered ping-pong: same loop, default placement, across loops, loop and thread."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import gorun

from ._harness import Case, Target

# -- same loop --------------------------------------------------------------------------


async def _queue_pingpong(n: int) -> float:
    ping: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    pong: asyncio.Queue[int] = asyncio.Queue(maxsize=1)

    async def echo() -> None:
        for _ in range(n):
            await pong.put(await ping.get())

    task = asyncio.create_task(echo())
    start = time.perf_counter()
    for i in range(n):
        await ping.put(i)
        await pong.get()
    elapsed = time.perf_counter() - start
    await task
    return elapsed


async def _chan_pingpong(n: int, *, local: bool) -> float:
    ping: gorun.Chan[int] = gorun.Chan()
    pong: gorun.Chan[int] = gorun.Chan()

    async def echo() -> None:
        for _ in range(n):
            await pong.send(await ping.recv())

    if local:
        g: Any = gorun.go(echo(), local=True)
    else:
        g = asyncio.ensure_future(echo())
    start = time.perf_counter()
    for i in range(n):
        await ping.send(i)
        await pong.recv()
    elapsed = time.perf_counter() - start
    await g
    return elapsed


def asyncio_queue(n: int) -> float:
    """Two tasks on one asyncio loop, two ``asyncio.Queue(1)``."""
    return asyncio.run(_queue_pingpong(n))


def gorun_chan_local(n: int) -> float:
    """Two gorun.Chan, the echo started with ``go(local=True)`` (procs=2)."""
    return gorun.run(_chan_pingpong(n, local=True), procs=2)


def gorun_chan_on_asyncio(n: int) -> float:
    """Two gorun.Chan between two tasks of a plain asyncio loop."""
    return asyncio.run(_chan_pingpong(n, local=False))


def trio_memory_channel(n: int) -> float:
    """Two unbuffered trio memory channels, two tasks of one nursery."""
    import trio

    async def main() -> float:
        ping_tx, ping_rx = trio.open_memory_channel[int](0)
        pong_tx, pong_rx = trio.open_memory_channel[int](0)

        async def echo() -> None:
            for _ in range(n):
                await pong_tx.send(await ping_rx.receive())

        elapsed = 0.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            start = time.perf_counter()
            for i in range(n):
                await ping_tx.send(i)
                await pong_rx.receive()
            elapsed = time.perf_counter() - start
        return elapsed

    return trio.run(main)


def anyio_memory_stream(n: int) -> float:
    """Two unbuffered anyio memory object streams, on asyncio."""
    import anyio

    async def main() -> float:
        ping_tx, ping_rx = anyio.create_memory_object_stream[int](0)
        pong_tx, pong_rx = anyio.create_memory_object_stream[int](0)

        async def echo() -> None:
            for _ in range(n):
                await pong_tx.send(await ping_rx.receive())

        elapsed = 0.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo)
            start = time.perf_counter()
            for i in range(n):
                await ping_tx.send(i)
                await pong_rx.receive()
            elapsed = time.perf_counter() - start
        for s in (ping_tx, ping_rx, pong_tx, pong_rx):
            s.close()
        return elapsed

    return anyio.run(main, backend="asyncio")


def aiochannel_channel(n: int) -> float:
    """Two ``aiochannel.Channel(1)`` on one asyncio loop."""
    from aiochannel import Channel

    async def main() -> float:
        ping: Channel[int] = Channel(1)
        pong: Channel[int] = Channel(1)

        async def echo() -> None:
            for _ in range(n):
                await pong.put(await ping.get())

        task = asyncio.create_task(echo())
        start = time.perf_counter()
        for i in range(n):
            await ping.put(i)
            await pong.get()
        elapsed = time.perf_counter() - start
        await task
        return elapsed

    return asyncio.run(main())


# -- default placement -------------------------------------------------------------------


def gorun_chan_default_placement(n: int) -> float:
    """Pinger and ponger both started with ``go()`` (procs=2)."""

    async def main() -> float:
        ping: gorun.Chan[int] = gorun.Chan()
        pong: gorun.Chan[int] = gorun.Chan()
        ready = gorun.Chan[float](1)

        async def pinger() -> None:
            start = time.perf_counter()
            for i in range(n):
                await ping.send(i)
                await pong.recv()
            await ready.send(time.perf_counter() - start)

        async def ponger() -> None:
            for _ in range(n):
                await pong.send(await ping.recv())

        a, b = gorun.go(pinger()), gorun.go(ponger())
        await a
        await b
        return await ready.recv()

    return gorun.run(main(), procs=2)


# -- across loops ------------------------------------------------------------------------


class _LoopThread:
    """An asyncio loop on a thread of its own, for the raw cross-loop baselines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def call_soon_threadsafe_round_trip(n: int) -> float:
    """A future resolved by two ``call_soon_threadsafe`` hops."""
    other = _LoopThread()

    async def main() -> float:
        here = asyncio.get_running_loop()
        start = time.perf_counter()
        for _ in range(n):
            fut = here.create_future()
            other.loop.call_soon_threadsafe(here.call_soon_threadsafe, fut.set_result, None)
            await fut
        return time.perf_counter() - start

    try:
        return asyncio.run(main())
    finally:
        other.close()


def task_to_task_round_trip(n: int) -> float:
    """Two tasks on two loops: each hop resolves the other task's future by
    ``call_soon_threadsafe``. The least a hand-off between tasks on two loops costs with
    asyncio alone: the raw round trip plus the two task steps."""
    other = _LoopThread()

    async def main() -> float:
        here = asyncio.get_running_loop()
        # The echo task's pending future; set on the echo's loop before it awaits, and
        # read there by the posted callback, which runs after that step.
        slot: list[asyncio.Future[tuple[int, asyncio.Future[int]]]] = []
        started = threading.Event()

        async def echo() -> None:
            loop = asyncio.get_running_loop()
            for _ in range(n):
                waiter: asyncio.Future[tuple[int, asyncio.Future[int]]] = loop.create_future()
                slot[:] = [waiter]
                started.set()
                value, reply = await waiter
                here.call_soon_threadsafe(reply.set_result, value)

        def deliver(value: int, reply: asyncio.Future[int]) -> None:
            slot[0].set_result((value, reply))

        done = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(echo(), other.loop))
        started.wait()  # its first future is in the slot
        start = time.perf_counter()
        for i in range(n):
            reply = here.create_future()
            other.loop.call_soon_threadsafe(deliver, i, reply)
            await reply
        elapsed = time.perf_counter() - start
        await done
        return elapsed

    try:
        return asyncio.run(main())
    finally:
        other.close()


def gorun_chan_cross_loop(n: int) -> float:
    """Two gorun.Chan between goroutines on two workers."""

    async def main() -> float:
        ping: gorun.Chan[int] = gorun.Chan()
        pong: gorun.Chan[int] = gorun.Chan()
        started = threading.Event()

        async def echo() -> None:
            started.set()
            for _ in range(n):
                await pong.send(await ping.recv())

        g = gorun.go(echo())
        started.wait()  # blocks the home loop, so echo starts on the other worker
        start = time.perf_counter()
        for i in range(n):
            await ping.send(i)
            await pong.recv()
        elapsed = time.perf_counter() - start
        await g
        return elapsed

    return gorun.run(main(), procs=2)


def culsans_cross_loop(n: int) -> float:
    """Two ``culsans.Queue(1)`` between two asyncio loops on two threads."""
    import culsans

    ping: Any = culsans.Queue(maxsize=1)
    pong: Any = culsans.Queue(maxsize=1)
    other = _LoopThread()

    async def echo() -> None:
        for _ in range(n):
            await pong.async_q.put(await ping.async_q.get())

    async def main() -> float:
        done = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(echo(), other.loop))
        start = time.perf_counter()
        for i in range(n):
            await ping.async_q.put(i)
            await pong.async_q.get()
        elapsed = time.perf_counter() - start
        await done
        return elapsed

    try:
        return asyncio.run(main())
    finally:
        other.close()


# -- loop and plain thread ---------------------------------------------------------------


def gorun_chan_loop_thread(n: int) -> float:
    """gorun.Chan between a loop (``await``) and a thread (``_blocking``)."""
    ping: gorun.Chan[int] = gorun.Chan()
    pong: gorun.Chan[int] = gorun.Chan()

    def echo() -> None:
        for _ in range(n):
            pong.send_blocking(ping.recv_blocking())

    async def main() -> float:
        start = time.perf_counter()
        for i in range(n):
            await ping.send(i)
            await pong.recv()
        return time.perf_counter() - start

    t = threading.Thread(target=echo)
    t.start()
    try:
        return asyncio.run(main())
    finally:
        t.join()


def janus_loop_thread(n: int) -> float:
    """Two ``janus.Queue(1)`` between a loop and a plain thread."""
    import janus

    async def main() -> float:
        ping: janus.Queue[int] = janus.Queue(maxsize=1)
        pong: janus.Queue[int] = janus.Queue(maxsize=1)

        def echo() -> None:
            for _ in range(n):
                pong.sync_q.put(ping.sync_q.get())

        t = threading.Thread(target=echo)
        t.start()
        start = time.perf_counter()
        for i in range(n):
            await ping.async_q.put(i)
            await pong.async_q.get()
        elapsed = time.perf_counter() - start
        await asyncio.to_thread(t.join)
        ping.close()
        pong.close()
        await ping.wait_closed()
        await pong.wait_closed()
        return elapsed

    return asyncio.run(main())


def cases() -> list[Case]:
    """The ping-pong cases."""
    return [
        Case(
            name="pingpong-same-loop",
            description="unbuffered ping-pong between two tasks on one loop",
            unit="round trip",
            baseline="asyncio.Queue(1)",
            peers={
                "asyncio.Queue(1)": asyncio_queue,
                "gorun.Chan, go(local=True)": gorun_chan_local,
                "gorun.Chan on a plain asyncio loop": gorun_chan_on_asyncio,
                "trio memory channel": trio_memory_channel,
                "anyio memory stream (asyncio)": anyio_memory_stream,
                "aiochannel.Channel(1)": aiochannel_channel,
            },
            ops=20_000,
            quick_ops=4_000,
            targets=[
                Target("gorun.Chan, go(local=True)", "asyncio.Queue(1)", 0.8),
                Target("gorun.Chan, go(local=True)", "trio memory channel", 0.5),
                Target("gorun.Chan, go(local=True)", "anyio memory stream (asyncio)", 0.5),
            ],
        ),
        Case(
            name="pingpong-default-placement",
            description="ping-pong between two goroutines started with go() (procs=2)",
            unit="round trip",
            baseline="asyncio.Queue(1)",
            peers={
                "asyncio.Queue(1)": asyncio_queue,
                "gorun.Chan, two go() goroutines": gorun_chan_default_placement,
            },
            ops=20_000,
            quick_ops=4_000,
            targets=[Target("gorun.Chan, two go() goroutines", "asyncio.Queue(1)", 0.8)],
        ),
        Case(
            name="pingpong-cross-loop",
            description="ping-pong between two loops on two threads",
            unit="round trip",
            baseline="raw call_soon_threadsafe",
            peers={
                "raw call_soon_threadsafe": call_soon_threadsafe_round_trip,
                "two tasks, futures + call_soon_threadsafe": task_to_task_round_trip,
                "gorun.Chan across two workers": gorun_chan_cross_loop,
                "culsans.Queue(1) across two loops": culsans_cross_loop,
            },
            ops=3_000,
            quick_ops=600,
            targets=[
                Target("gorun.Chan across two workers", "raw call_soon_threadsafe", 1.25),
                Target("gorun.Chan across two workers", "culsans.Queue(1) across two loops", 0.5),
            ],
        ),
        Case(
            name="pingpong-loop-thread",
            description="ping-pong between a loop and a plain thread",
            unit="round trip",
            baseline="janus.Queue(1)",
            peers={
                "janus.Queue(1)": janus_loop_thread,
                "gorun.Chan, send/recv_blocking": gorun_chan_loop_thread,
            },
            ops=3_000,
            quick_ops=600,
        ),
    ]
