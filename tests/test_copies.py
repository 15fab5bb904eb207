"""Hot-path copies, driven side by side with the code they copy.

A few functions that run once per message or per goroutine inline a helper rather than
call it: a Python call costs about a thousand instructions on 3.11, against some 60,000
for a same-loop round trip and 120,000 for a cross-loop one. Each copy names its
original in a comment, and each is checked here against it, with the same inputs:

* ``Chan.send`` inlines ``Chan._try_send``, and ``Chan.recv`` the unbuffered case of
  ``Chan._try_recv``. Each test builds the same channel state twice, from a seeded random
  description (live and stale waiters of every kind, buffered values, a closed channel),
  runs the original on one and the inlined path on the other, and compares everything
  they did: the outcome, which waiter was claimed and what it was handed, the buffer and
  the queues.
* ``Worker.post`` inlines ``Worker._claim_wake``; ``Worker.push_local`` inlines
  ``Worker.queue_time`` and ``Worker.schedule_tick``; awaiting a done ``Goroutine``
  inlines ``Goroutine._outcome``; ``new_solo`` and ``new_recv`` inline ``wait_start``;
  ``Blocking.wake`` inlines the gorun-worker case of ``call_in_loop``;
  ``Worker._start_eagerly`` inlines ``Worker._take_next``; ``go()`` inlines the common
  case of ``Runtime.spawn``.

The other copies kept for speed have tests of their own beside the code they concern:
``_compat.LoopBase.call_soon`` against ``asyncio.Handle`` (test_runtime.py,
``test_a_worker_loops_call_soon_makes_the_handle_asyncio_makes``), and the inline epoll
poll of ``_selector.ParkingSelector.select_parked`` against the selector's own
``select()`` (test_runtime.py, the flood test runs both ways).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import random
import time
import types
from collections import deque
from dataclasses import dataclass
from typing import Any

import pytest

import gorun
from gorun._chan_wait import Waiting, new_recv
from gorun._failure import Failure as _Failure
from gorun._waiter import CANCELLED, Parker, Waiter, new_parker, new_solo

ROUNDS = 400


@dataclass
class WaiterSpec:
    kind: str  # "solo" or "select" (a select's case)
    stale: bool  # decided already: it gave up, or another case of its select won
    value: int


@dataclass
class ChanSpec:
    cap: int
    closed: bool
    buf: list[int]
    recvq: list[WaiterSpec]
    sendq: list[WaiterSpec]


def _random_spec(rng: random.Random) -> ChanSpec:
    cap = rng.choice([0, 0, 1, 2, 3])
    closed = rng.random() < 0.2
    buf = [rng.randrange(1000) for _ in range(rng.randint(0, cap))]

    def waiters() -> list[WaiterSpec]:
        return [
            WaiterSpec(rng.choice(["solo", "select"]), rng.random() < 0.4, rng.randrange(1000))
            for _ in range(rng.randint(0, 3))
        ]

    # A channel's invariants: receivers wait only while nothing is buffered, senders only
    # while the buffer is full, and nobody waits on a closed channel but stale waiters.
    recvq = waiters() if not buf else []
    sendq = waiters() if len(buf) == cap and not recvq else []
    if closed:
        for w in recvq + sendq:
            w.stale = True
    return ChanSpec(cap, closed, buf, recvq, sendq)


def _build(spec: ChanSpec, loop: asyncio.AbstractEventLoop) -> tuple[Any, list[Any], list[Any]]:
    ch: Any = gorun.Chan(spec.cap)
    ch._buf.extend(spec.buf)
    ch._closed = spec.closed

    def make(w: WaiterSpec, queue: str) -> Any:
        what = "chan send" if queue == "send" else "chan receive"
        value = w.value if queue == "send" else None
        if w.kind == "solo":
            # A goroutine's receive parks on a ChanRecv, its send on a Solo.
            op: Any = new_recv() if queue == "recv" else new_solo(loop, ch, what, value)
            if w.stale:
                op.claim(CANCELLED)
            return op
        parker = new_parker(Parker, loop, "select", [], shared=True)
        if w.stale:
            parker.claim(CANCELLED)
        return Waiter(parker, 0, value)

    recvs = [make(w, "recv") for w in spec.recvq]
    sends = [make(w, "send") for w in spec.sendq]
    ch._recvq = deque(recvs)
    ch._sendq = deque(sends)
    return ch, recvs, sends


def _state(ch: Any, recvs: list[Any], sends: list[Any]) -> dict[str, Any]:
    def waiter_state(w: Any) -> tuple[Any, ...]:
        winner = w.winner if hasattr(w, "winner") else w.parker.winner
        decided = "cancelled" if winner == CANCELLED else ("open" if winner is None else "won")
        # A waiting receive's value is the mark of its millisecond: one per build, or two.
        return (decided, "waiting" if w.value.__class__ is Waiting else w.value)

    return {
        "buf": list(ch._buf),
        "recvq": [recvs.index(w) if w in recvs else "new" for w in ch._recvq],
        "sendq": [sends.index(w) if w in sends else "new" for w in ch._sendq],
        "recvs": [waiter_state(w) for w in recvs],
        "sends": [waiter_state(w) for w in sends],
        "closed": ch._closed,
    }


async def _run_copy(coro: Any) -> tuple[str, Any]:
    # Run the inlined path as a task; if it parks, say so (and stop it there).
    task = asyncio.ensure_future(coro)
    for _ in range(3):
        await asyncio.sleep(0)
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return ("parked", None)
    exc = task.exception()
    return ("raised", type(exc).__name__) if exc else ("done", task.result())


def test_send_does_what_try_send_does(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ROUNDS):
            spec = _random_spec(rng)
            value = rng.randrange(1000, 2000)
            original, o_recvs, o_sends = _build(spec, loop)
            copy, c_recvs, c_sends = _build(spec, loop)
            expected: tuple[str, Any]
            try:
                got = original._try_send(value)
                expected = ("parked", None) if got is False else ("done", None)
            except gorun.Closed:
                expected = ("raised", "Closed")
            outcome = await _run_copy(copy.send(value))
            assert outcome == expected, spec
            want, have = _state(original, o_recvs, o_sends), _state(copy, c_recvs, c_sends)
            if outcome[0] == "parked":
                # The copy parked a new sender carrying the value, then gave up (the
                # cancel above): nothing else may differ.
                want["sendq"] = have["sendq"] = [i for i in have["sendq"] if i != "new"]
            assert have == want, spec

    asyncio.run(main())


def test_recv_does_what_try_recv_does(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ROUNDS):
            spec = _random_spec(rng)
            original, o_recvs, o_sends = _build(spec, loop)
            copy, c_recvs, c_sends = _build(spec, loop)
            got = original._try_recv()
            if got is None:
                expected: tuple[str, Any] = ("parked", None)
            elif got[1]:
                expected = ("done", got[0])
            else:
                expected = ("raised", "Closed")
            outcome = await _run_copy(copy.recv())
            assert outcome == expected, spec
            want, have = _state(original, o_recvs, o_sends), _state(copy, c_recvs, c_sends)
            if outcome[0] == "parked":
                want["recvq"] = have["recvq"] = [i for i in have["recvq"] if i != "new"]
            assert have == want, spec

    asyncio.run(main())


@pytest.mark.parametrize("closed", [False, True])
def test_the_random_states_cover_every_branch(closed: bool) -> None:
    # The generator above must reach each branch of the copies: a live receiver or sender
    # to hand off to, stale ones to skip, a buffer with room, a full one, a closed channel.
    rng = random.Random(1)
    specs = [_random_spec(rng) for _ in range(ROUNDS)]
    specs = [s for s in specs if s.closed == closed]
    assert specs
    if not closed:
        assert any(any(not w.stale for w in s.recvq) for s in specs)
        assert any(any(not w.stale for w in s.sendq) for s in specs)
        assert any(s.recvq and all(w.stale for w in s.recvq) for s in specs)
        assert any(len(s.buf) < s.cap for s in specs)
        assert any(s.buf and len(s.buf) == s.cap for s in specs)
        assert any(s.cap == 0 and not s.recvq and not s.sendq for s in specs)


# -- the scheduler's and the waiters' inline copies --------------------------------------------


class _Recorder:
    """Stands in for a loop (call_soon) or a worker (post): records what it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.loop: Any = None

    def call_soon(self, fn: Any, *args: Any) -> None:
        self.calls.append((fn, *args))

    def post(self, fn: Any, *args: Any) -> bool:
        self.calls.append((fn, *args))
        return True

    def get_debug(self) -> bool:  # asyncio.Future(loop=...) asks
        return False


def _worker() -> Any:
    from gorun._worker import Worker

    sysmon = types.SimpleNamespace(idle=False, poke=lambda: None, due=float("inf"))
    runtime: Any = types.SimpleNamespace(
        procs=2, sysmon=sysmon, stuck_after=1e9, steal_grace=1e9, permit=None
    )
    worker = Worker(runtime, 0)
    worker.loop = _Recorder()  # type: ignore[assignment]
    return worker


@pytest.mark.parametrize("notified", [False, True])
@pytest.mark.parametrize("parks_in_selector", [False, True])
@pytest.mark.parametrize("parked", [False, True])
def test_post_decides_the_wake_up_as_claim_wake_does(
    notified: bool, parks_in_selector: bool, parked: bool
) -> None:
    original, copy = _worker(), _worker()
    woken: list[int] = []
    copy.wake_fn = lambda: woken.append(1)
    for w in (original, copy):
        w.notified, w.parks_in_selector, w.parked = notified, parks_in_selector, parked
    with original.lock:
        wake = original._claim_wake()
    assert copy.post(print, "x") is True  # from this plain thread: not the worker's own
    assert bool(woken) == wake
    assert (copy.notified, copy.wakeups) == (original.notified, original.wakeups)
    assert list(copy.inbox) == [(print, ("x",))]


@pytest.mark.parametrize("scheduled", [False, True])
def test_push_local_schedules_the_tick_as_schedule_tick_does(scheduled: bool) -> None:
    original, copy = _worker(), _worker()
    for w in (original, copy):
        w._tick_scheduled = scheduled
    original.schedule_tick()
    copy.push_local(types.SimpleNamespace(_queued_at=0.0))
    assert copy._tick_scheduled == original._tick_scheduled
    assert [c[0].__func__ for c in copy.loop.calls] == [
        c[0].__func__ for c in original.loop.calls
    ]


def test_awaiting_a_done_goroutine_gives_what_outcome_gives() -> None:
    class Boom(Exception):
        pass

    async def value() -> int:
        return 7

    async def boom() -> int:
        raise Boom("x")

    async def never() -> int:
        await asyncio.Event().wait()
        return 0

    async def main() -> list[gorun.Goroutine[int]]:
        gs = [gorun.go(value()), gorun.go(boom()), gorun.go(never())]
        await asyncio.sleep(0)
        gs[2].cancel()
        await asyncio.gather(*gs, return_exceptions=True)
        return gs

    def outcome(fn: Any) -> tuple[str, Any]:
        try:
            return ("value", fn())
        except BaseException as exc:
            return ("raised", exc)

    for g in gorun.run(main(), procs=1):
        failure = g._value
        want = outcome(g._outcome)
        if failure.__class__ is _Failure:
            failure.armed = True  # as if nothing had retrieved it yet

        async def await_it(g: gorun.Goroutine[int] = g) -> int:
            return await g  # done: the inline copy, on a loop that is not gorun's

        have = outcome(lambda g=g: asyncio.run(await_it(g)))
        assert have == want
        if failure.__class__ is _Failure:
            assert not failure.armed  # disarmed: nothing is reported as it is freed


@pytest.mark.parametrize(
    ("last", "now"), [(0.0, 5.0), (5.0, 5.00001), (5.0, 5.0000499), (5.0, 5.00005), (5.0, 4.9)]
)
def test_push_local_times_the_queue_as_queue_time_does(
    last: float, now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gorun import _worker as worker_module

    monkeypatch.setattr(worker_module, "perf_counter", lambda: now)
    original, copy = _worker(), _worker()
    original._queue_time = copy._queue_time = last
    want = original.queue_time()
    g = types.SimpleNamespace(_queued_at=0.0)
    copy.push_local(g)
    assert g._queued_at is want
    assert copy._queue_time is original._queue_time


def test_goroutines_queued_within_the_grain_share_one_queue_time(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each queue time is at most QUEUE_TIME_GRAIN older than the time it stands for
    # (never younger), and a new one is taken once the last is that old; from the
    # worker's own thread (push_local) and from others (push_remote) alike.
    from gorun import _worker as worker_module

    clock = [100.0]
    monkeypatch.setattr(worker_module, "perf_counter", lambda: clock[0])
    worker = _worker()
    worker.runtime.wake_idle = lambda: None  # push_remote's call once the worker is woken
    grain = worker_module.QUEUE_TIME_GRAIN
    times: list[float] = []
    clocks: list[float] = []
    for step in [0.0, grain / 3, grain / 3, grain / 2, grain / 2, 10.0]:
        clock[0] += step
        g = types.SimpleNamespace(_queued_at=0.0)
        if len(times) % 2:
            worker.push_local(g)
        else:
            assert worker.push_remote(g)
        assert clock[0] - grain < g._queued_at <= clock[0]
        times.append(g._queued_at)
        clocks.append(clock[0])
    assert times[0] is times[1] is times[2]  # within a grain of the first
    assert times[3] is clocks[3]  # past it: a time of its own
    assert times[4] is times[3]
    assert times[5] is clocks[5]


@pytest.mark.parametrize("make", ["new_solo", "new_recv"])
@pytest.mark.parametrize(("last", "now"), [(0.0, 5.0), (5.0, 5.0004), (5.0, 5.002)])
def test_a_parked_operation_times_its_wait_as_wait_start_does(
    make: str, last: float, now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # new_solo() shares wait_start()'s floats, inline; new_recv() shares marks of its
    # own that carry the time, by the same rule.
    from gorun import _chan_wait, _waiter

    monkeypatch.setattr(_waiter, "_monotonic", lambda: now)
    monkeypatch.setattr(_chan_wait, "_monotonic", lambda: now)
    _waiter._since[0] = last
    want = (_waiter.wait_start(), _waiter._since[0])
    _waiter._since[0] = _chan_wait._waiting[0].since = last

    async def park() -> tuple[Any, float]:
        if make == "new_recv":
            return _chan_wait.new_recv().since, _chan_wait._waiting[0].since
        op = _waiter.new_solo(asyncio.get_running_loop(), None, "chan send")
        return op.since, _waiter._since[0]

    assert asyncio.run(park()) == want


def test_a_waiter_wakes_a_worker_as_call_in_loop_does() -> None:
    from gorun._waiter import _resolve
    from gorun._wakeup import call_in_loop

    loop: Any = _Recorder()
    worker = _Recorder()
    worker.loop = loop
    loop._gorun_worker = worker
    fut: asyncio.Future[None] = asyncio.Future(loop=loop)
    op = new_solo(asyncio.new_event_loop(), None, "chan receive")
    op.fut.get_loop().close()
    op.fut = fut
    op.wake()  # from this plain thread: the worker's loop is not running here
    call_in_loop(loop, _resolve, fut)
    assert worker.calls == [(_resolve, fut), (_resolve, fut)]


@pytest.mark.parametrize("spawns_while_starting", [False, True])
def test_a_tick_that_leaves_work_schedules_the_next_as_schedule_tick_does(
    spawns_while_starting: bool,
) -> None:
    # After it starts a goroutine, a tick that leaves work queued schedules the next tick
    # (inline), unless one was scheduled meanwhile (a goroutine that spawned as it
    # started): exactly what schedule_tick() does from the same state.
    from gorun._worker import Worker

    original, copy = _worker(), _worker()

    def start_on(worker: Any) -> bool:
        if spawns_while_starting:
            worker.schedule_tick()
        return True

    copy.runq.extend(types.SimpleNamespace(_queued_at=0.0, _start_on=start_on) for _ in range(3))
    copy.tick()  # with other workers it starts one, and leaves two queued
    assert len(copy.runq) == 2
    if spawns_while_starting:
        original.schedule_tick()
    original.schedule_tick()
    assert copy._tick_scheduled == original._tick_scheduled is True
    assert [c[0].__func__ for c in copy.loop.calls] == [Worker.tick]
    assert [c[0].__func__ for c in original.loop.calls] == [Worker.tick]


@pytest.mark.parametrize("with_runnext", [False, True])
def test_the_eager_start_takes_goroutines_as_take_next_does(with_runnext: bool) -> None:
    # Worker._start_eagerly inlines _take_next(): runnext first, then the run queue in
    # order, until both are empty.
    def queue(worker: Any, started: list[str]) -> None:
        def item(name: str) -> Any:
            return types.SimpleNamespace(
                _queued_at=0.0, _start_on=lambda _w: started.append(name)
            )

        worker.runq.extend(item(f"q{i}") for i in range(3))
        if with_runnext:
            worker.runnext = item("next")

    original, copy = _worker(), _worker()
    taken: list[str] = []
    queue(original, taken)
    while (g := original._take_next()) is not None:
        g._start_on(original)
    started: list[str] = []
    queue(copy, started)
    while copy._start_eagerly(collections.deque(), time.perf_counter()):
        pass
    assert started == taken
    assert copy.runnext is None
    assert not copy.runq


def test_go_queues_a_goroutine_as_spawn_does() -> None:
    # go() on a worker inlines Runtime.spawn's common case: counted, then in the
    # worker's runnext slot (the one before it kicked into the run queue).
    from gorun._current import current_runtime, current_runtime_var
    from gorun._goroutine import Goroutine
    from gorun._thread_state import current_worker

    async def nothing() -> None:
        pass

    async def main() -> list[tuple[int, bool, bool]]:
        rt, worker = current_runtime(), current_worker()
        assert rt is not None
        assert worker is not None
        looks = []
        for spawn in (False, True):
            before = rt.num_goroutine()
            if spawn:
                context = contextvars.copy_context()
                context.run(current_runtime_var.set, rt)
                g: gorun.Goroutine[None] = Goroutine(nothing(), None, context)
                rt.spawn(g, worker)
            else:
                g = gorun.go(nothing())
            looks.append((rt.num_goroutine() - before, worker.runnext is g, g in worker.runq))
            await g
        return looks

    assert gorun.run(main(), procs=1) == [(1, True, False), (1, True, False)]
