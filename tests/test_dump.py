"""gorun.dump() shows, for every kind of blocking point, what a goroutine waits for and
for how long: the waiter it sleeps on says so (the blocking-point protocol of _waiter),
so no local variable name can silently hide a wait from the dump.

Each case parks a goroutine named 'blocked' at one blocking point; the test waits until
the dump shows it there (no sleeps), then checks the label, the duration and the detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import gorun
from gorun._current import current_runtime
from gorun._dump import live_goroutines
from gorun._go import start_on
from gorun._runtime import Runtime
from gorun._thread_state import current_worker
from tests.support import scheduler_state, stuck

TIMEOUT = 10.0

#: A case: builds, on the home loop, the coroutine of the goroutine 'blocked' (it may
#: start helpers and register cleanups), and says what the dump must show after the
#: label: a piece of the detail line.
Setup = Callable[[list[Callable[[], object]]], Awaitable[Any]]


async def _until_dump_shows(pattern: str) -> str:
    deadline = time.monotonic() + TIMEOUT
    while True:
        text = gorun.dump()
        if re.search(pattern, text):
            return text
        assert time.monotonic() < deadline, f"{pattern!r} not in the dump:\n{text}"
        await asyncio.sleep(0.001)


async def _chan_send(cleanup: list[Callable[[], object]]) -> Any:
    ch: gorun.Chan[int] = gorun.Chan()
    return ch.send(1)


async def _chan_recv(cleanup: list[Callable[[], object]]) -> Any:
    ch: gorun.Chan[int] = gorun.Chan()
    return ch.recv()


async def _chan_send_timed(cleanup: list[Callable[[], object]]) -> Any:
    ch: gorun.Chan[int] = gorun.Chan()
    return ch.send(1, timeout=3600)


async def _chan_recv_timed(cleanup: list[Callable[[], object]]) -> Any:
    ch: gorun.Chan[int] = gorun.Chan()
    return ch.recv(timeout=3600)


async def _chan_recv_ok(cleanup: list[Callable[[], object]]) -> Any:
    ch: gorun.Chan[int] = gorun.Chan(2)
    return ch.recv_ok()


async def _chan_async_for(cleanup: list[Callable[[], object]]) -> Any:
    ch: gorun.Chan[int] = gorun.Chan()

    async def loop() -> None:
        async for _ in ch:
            pass

    return loop()


async def _select(cleanup: list[Callable[[], object]]) -> Any:
    a: gorun.Chan[int] = gorun.Chan()
    b: gorun.Chan[int] = gorun.Chan()
    return gorun.select(a.recv, (b.send, 1), a.recv_ok)


async def _waitgroup(cleanup: list[Callable[[], object]]) -> Any:
    wg = gorun.WaitGroup()
    wg.add(1)
    return wg.wait()


async def _mutex(cleanup: list[Callable[[], object]]) -> Any:
    mu = gorun.Mutex()
    await mu.lock()
    return mu.lock()


async def _rwmutex_lock(cleanup: list[Callable[[], object]]) -> Any:
    rw = gorun.RWMutex()
    await rw.rlock()
    return rw.lock()


async def _rwmutex_rlock(cleanup: list[Callable[[], object]]) -> Any:
    rw = gorun.RWMutex()
    await rw.lock()

    async def read() -> None:
        async with rw.reader:
            pass

    return read()


async def _once(cleanup: list[Callable[[], object]]) -> Any:
    once = gorun.Once()
    never: gorun.Chan[None] = gorun.Chan()
    first = gorun.go(once.do(never.recv), name="the-first-caller")
    cleanup.append(first.cancel)
    await _until_dump_shows(r"'the-first-caller' \[chan receive")
    return once.do(lambda: None)


async def _group(cleanup: list[Callable[[], object]]) -> Any:
    never: gorun.Chan[None] = gorun.Chan()

    async def body() -> None:
        async with gorun.Group() as g:
            g.go(never.recv(), name="the-child")

    return body()


async def _goroutine_same_loop(cleanup: list[Callable[[], object]]) -> Any:
    never: gorun.Chan[None] = gorun.Chan()
    target = gorun.go(never.recv(), name="the-target", local=True)
    cleanup.append(target.cancel)

    async def wait() -> None:
        await target

    return wait()


async def _goroutine_other_loop(cleanup: list[Callable[[], object]]) -> Any:
    # A goroutine of another runtime, on a thread of its own: never on this runtime's
    # loops, so awaiting it takes the cross-loop path.
    never: gorun.Chan[None] = gorun.Chan()
    handles: gorun.Chan[gorun.Goroutine[None]] = gorun.Chan(1)

    async def far_main() -> None:
        far = gorun.go(never.recv(), name="far")
        await handles.send(far)
        with contextlib.suppress(asyncio.CancelledError):
            await far

    thread = threading.Thread(target=gorun.run, args=(far_main(),), kwargs={"procs": 1})
    thread.start()
    target = await handles.recv()
    cleanup.append(target.cancel)
    cleanup.append(lambda: asyncio.to_thread(thread.join))  # its runtime ends with it

    async def wait() -> None:
        await target

    return wait()


#: (case id, setup, label the dump prints, a piece of its detail line)
CASES: list[tuple[str, Setup, str, str]] = [
    ("chan-send", _chan_send, "chan send", "chan send: <Chan cap=0"),
    ("chan-recv", _chan_recv, "chan receive", "chan receive: <Chan cap=0"),
    ("chan-send-timed", _chan_send_timed, "chan send", "chan send: <Chan cap=0"),
    ("chan-recv-timed", _chan_recv_timed, "chan receive", "chan receive: <Chan cap=0"),
    ("chan-recv-ok", _chan_recv_ok, "chan receive", "chan receive: <Chan cap=2"),
    ("chan-async-for", _chan_async_for, "chan receive", "chan receive: <Chan cap=0"),
    ("select", _select, "select", "select: recv <Chan cap=0"),
    ("waitgroup", _waitgroup, "WaitGroup.wait", "WaitGroup.wait: <WaitGroup count=1"),
    ("mutex", _mutex, "Mutex.lock", "Mutex.lock: <Mutex locked"),
    ("rwmutex-lock", _rwmutex_lock, "RWMutex.lock", "RWMutex.lock: <RWMutex readers=1"),
    ("rwmutex-rlock", _rwmutex_rlock, "RWMutex.rlock", "RWMutex.rlock: <RWMutex write-locked"),
    ("once", _once, "Once.do", "Once.do: <Once running"),
    ("group", _group, "Group wait", "Group wait: <Group running=1"),
    ("goroutine-same-loop", _goroutine_same_loop, "awaiting goroutine", "name='the-target'"),
    ("goroutine-other-loop", _goroutine_other_loop, "awaiting goroutine", "name='far'"),
]


@pytest.mark.parametrize(("setup", "label", "detail"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_dump_shows_wait_duration_for_every_blocking_point(
    setup: Setup, label: str, detail: str
) -> None:
    async def main() -> str:
        cleanup: list[Callable[[], object]] = []
        blocked = gorun.go(await setup(cleanup), name="blocked")
        try:
            # The label, then how long it has waited: "[chan receive, 3 ms]".
            duration = r"\d+(\.\d+)? (ms|s|minutes|hours)"
            return await _until_dump_shows(rf"'blocked' \[{re.escape(label)}, {duration}\]")
        finally:
            blocked.cancel()
            for fn in cleanup:
                done = fn()
                if inspect.isawaitable(done):
                    await done

    text = gorun.run(main(), procs=2)
    entry = text[text.index("'blocked' [") :]
    assert detail in entry.split("\n")[1], entry


#: One case per label, for the deadlock check (the cross-runtime await is left out: a
#: goroutine of another runtime could still end that wait; so are the timed waits, which
#: their timers end).
DEADLOCK_CASES = [c for c in CASES if c[0] not in ("chan-recv-ok", "chan-async-for",
                                                   "goroutine-other-loop", "chan-send-timed",
                                                   "chan-recv-timed")]


@pytest.mark.parametrize(("setup", "label"), [c[1:3] for c in DEADLOCK_CASES],
                         ids=[c[0] for c in DEADLOCK_CASES])
def test_every_gorun_wait_is_one_only_gorun_can_end(setup: Setup, label: str) -> None:
    # The same protocol tells deadlock detection that such a wait can only be ended by
    # another goroutine: a goroutine blocked at any of these points, and main waiting
    # for it, with nothing else alive, is a deadlock.
    async def main() -> None:
        cleanup: list[Callable[[], object]] = []
        await gorun.go(await setup(cleanup), name="blocked")

    with pytest.raises(gorun.Deadlock) as info:
        gorun.run(main(), procs=2)
    assert f"'blocked' [{label}, " in str(info.value), str(info.value)


def test_goroutines_not_started_yet_are_found_in_their_queues() -> None:
    # No registry lists the goroutines: the dump, num_goroutine() and leak checks find a
    # goroutine that has not started in its worker's queues (runnext, runq, or a start
    # posted to the inbox by start_on from another thread), and a started one as its
    # Task's done callback. One worker, which blocks while it is looked at, so nothing
    # starts meanwhile.
    async def nap() -> None:
        await asyncio.sleep(0)

    def look(rt: Runtime) -> tuple[list[str], int, bool]:
        live = [g.name for g in live_goroutines(rt)]
        return live, rt.num_goroutine(), "[runnable, not started, queued" in gorun.dump()

    async def main() -> list[tuple[list[str], int, bool]]:
        waiting = gorun.go(gorun.Chan[None]().recv(), name="waiting")
        await asyncio.sleep(0.01)  # it starts, and parks in its receive
        gs = [gorun.go(nap(), name=f"queued-{i}") for i in range(3)]  # runnext and runq
        rt, worker = current_runtime(), current_worker()
        assert rt is not None
        assert worker is not None
        looks = [look(rt)]

        def from_a_thread() -> None:
            gs.append(start_on(nap(), worker, name="posted"))
            looks.append(look(rt))

        thread = threading.Thread(target=from_a_thread)
        thread.start()
        thread.join(TIMEOUT)  # blocks this loop: the posted start waits in the inbox
        for g in gs:
            await g
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        looks.append(look(rt))
        return looks

    first, second, last = gorun.run(main(), procs=1)
    assert first == (["waiting", "queued-0", "queued-1", "queued-2"], 4, True)
    assert second == (["waiting", "queued-0", "queued-1", "queued-2", "posted"], 5, True)
    assert last == ([], 0, False)


def test_a_stuck_step_prints_the_scheduler_state_and_every_thread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # tests/support.stuck(): a stress test that fails because queued work was never taken
    # leaves behind what decides who takes it, not only the goroutines.
    assert scheduler_state() == ""  # outside a runtime: nothing to show

    async def main() -> AssertionError:
        return stuck("a step that did not happen")

    error = gorun.run(main(), procs=2)
    assert str(error) == "a step that did not happen"
    out = capsys.readouterr().out
    assert re.search(r"placement: looking \(_nspinning\)=\d", out)
    assert re.search(r"worker 0: parked=False notified=\w+ spinning=False runq=0", out)
    assert re.search(r"worker 1: parked=\w+ notified=\w+ spinning=\w+ runq=0", out)
    assert re.search(r"monitor: alive=\w+ idle=\w+ delay=[\d.]+ ms", out)
    assert "Current thread" in out or "Thread 0x" in out  # every thread's stack
