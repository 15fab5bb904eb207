"""Helpers the test modules share: plain functions and classes that tests call directly.
(The shared fixtures are in ``conftest.py``.)

* Seeds: :func:`draw_seed` takes a test's seed from an environment variable if set, else
  the one drawn for the run, and prints it either way with how to replay it.
* Channels: :func:`pinner` forces goroutines onto distinct workers (by blocking their
  threads on a barrier), :func:`parked` and :func:`until_parked` show and wait for parked
  senders and receivers, :func:`outcome` turns an operation's error into its class.
* The randomized exchange (:class:`Exchange`, :func:`run_exchange`), driven by
  ``test_chan`` and, at scale, by ``test_chan_stress``: no value lost or duplicated.
* Select races (:func:`race_two_selects`, :func:`race_counterparties`), driven by
  ``test_select`` and ``test_chan_stress``.
* The stress harness: :func:`bounded` / :func:`run_bounded` (every stress run has a
  deadline, and one that misses it prints what is still running and fails),
  :func:`until`, :func:`stuck` and :class:`Crew` (members on every worker and on plain
  threads that run one job per round).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import faulthandler
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

import gorun

T = TypeVar("T")

#: Seconds a test waits for another party before it fails (a bound, not a delay).
TIMEOUT = 10.0
#: Workers of the runtimes that spread goroutines over several workers.
PROCS = 4
#: Seconds one step of a stress test may wait for another party (a bound, not a delay).
STEP_TIMEOUT = 30.0
#: Seconds a stress run that missed its deadline gets to unwind once its main task is
#: cancelled.
GRACE = 20.0


# -- seeds ---------------------------------------------------------------------------------------

#: Replays the seed of a test of the default suite.
TEST_SEED_ENV = "GORUN_TEST_SEED"
#: Replays the seed of a stress test (``pytest -m stress``).
STRESS_SEED_ENV = "GORUN_STRESS_SEED"


_session_seeds: dict[str, int] = {}


def session_seed(env: str = TEST_SEED_ENV) -> int:
    """This run's seed for *env*: the variable's value if set, else one drawn once per
    run (the report header prints it, so every CI log says how to replay its run)."""
    if env not in _session_seeds:
        text = os.environ.get(env)
        _session_seeds[env] = int(text) if text else random.randrange(2**32)
    return _session_seeds[env]


def draw_seed(env: str = TEST_SEED_ENV) -> int:
    """The run's seed for *env* (see :func:`session_seed`), printed with the setting that
    replays it: pytest shows it with a failing test's captured output (``-s`` shows it
    live)."""
    value = session_seed(env)
    print(f"seed={value} (replay with {env}={value})", flush=True)
    return value


# -- channels ------------------------------------------------------------------------------------


def pinner(n: int) -> Callable[[], int]:
    """``pin()`` blocks until *n* callers arrived, so *n* goroutines calling it first run
    on *n* distinct worker threads; it returns the caller's thread id."""
    barrier = threading.Barrier(n, timeout=TIMEOUT)

    def pin() -> int:
        barrier.wait()
        return threading.get_ident()

    return pin


def parked(ch: gorun.Chan[Any]) -> tuple[int, int]:
    """(live parked senders, live parked receivers) of *ch*."""
    with ch._lock:
        return (
            sum(not w.stale for w in ch._sendq),
            sum(not w.stale for w in ch._recvq),
        )


async def until_parked(ch: gorun.Chan[Any], senders: int = 0, receivers: int = 0) -> None:
    """Yield until *ch* has at least this many parked senders and receivers."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        s, r = parked(ch)
        if s >= senders and r >= receivers:
            return
        assert time.monotonic() < deadline, f"parked {s} senders, {r} receivers"
        await asyncio.sleep(0.0005)


def until_parked_blocking(ch: gorun.Chan[Any], senders: int = 0, receivers: int = 0) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        s, r = parked(ch)
        if s >= senders and r >= receivers:
            return
        assert time.monotonic() < deadline, f"parked {s} senders, {r} receivers"
        time.sleep(0.0005)


async def outcome(aw: Any) -> Any:
    """The result of awaiting *aw*, or the exception class it raised."""
    try:
        return await aw
    except (gorun.Closed, gorun.WouldBlock, TimeoutError, asyncio.CancelledError) as exc:
        return type(exc)


def empty(ch: gorun.Chan[Any]) -> bool:
    """True if *ch* holds nothing and no sender waits on it (recv_nowait would block)."""
    try:
        ch.recv_nowait()
    except gorun.WouldBlock:
        return True
    return False


# -- the exchange: no value lost or duplicated --------------------------------------------------

STRIDE = 1 << 32
TINY = (0.0, 0.0, 1e-5, 5e-5, 2e-4, 1e-3)


@dataclasses.dataclass
class Exchange:
    """A randomized exchange: goroutine producers and consumers on every worker, plain
    thread ones, random timeouts and cancels; see :func:`run_exchange`."""

    seed: int
    values: int  # values per producer
    cap: int
    procs: int = PROCS
    producers_per_worker: int = 1
    consumers_per_worker: int = 1
    thread_producers: int = 1
    thread_consumers: int = 1
    close_early: bool = False  # close while producers still send
    chaos: bool = True  # a goroutine cancels producers (and consumers) at random
    # Cancel waiting receivers too (timeouts, chaos). A value handed to a receiver as it
    # is cancelled goes back to the channel, maybe behind values others took meanwhile:
    # each consumer sees each producer's values in order only without this.
    cancel_receivers: bool = True
    deadline: float = 45.0  # seconds, then report progress and fail


@dataclasses.dataclass
class Ledger:
    sent: list[int] = dataclasses.field(default_factory=list)
    received: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def count(self, what: str) -> None:
        self.outcomes[what] += 1  # a race here only blurs the statistics


def _uncancel() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.uncancel()


async def _produce(
    ch: gorun.Chan[int], never: gorun.Chan[int], values: range, rng: random.Random, led: Ledger
) -> None:
    # Each value is offered once; it goes into led.sent right after the operation
    # returns, before any other await, where a cancel too late to undo it is raised.
    for v in values:
        if led.stop.is_set():
            return
        mode = rng.randrange(6)
        try:
            if mode == 0:
                await ch.send(v)
                led.sent.append(v)
            elif mode == 1:
                async with asyncio.timeout(rng.choice(TINY)):
                    await ch.send(v)
                    led.sent.append(v)
            elif mode == 2:
                index, _ = await gorun.select((ch.send, v), never.recv, (ch.send, v))
                led.sent.append(v)
                assert index in (0, 2)
            elif mode == 3:
                async with asyncio.timeout(rng.choice(TINY)):
                    await gorun.select(never.recv_ok, (ch.send, v))
                    led.sent.append(v)
            elif mode == 4:
                try:
                    ch.send_nowait(v)
                    led.sent.append(v)
                except gorun.WouldBlock:
                    led.count("send would block")
                    await asyncio.sleep(0)
            else:
                index, _ = await gorun.select((ch.send, v), default=True)
                if index == 0:
                    led.sent.append(v)
                else:
                    led.count("send default")
                    await asyncio.sleep(0)
        except TimeoutError:
            led.count("send timeout")
        except asyncio.CancelledError:
            if led.stop.is_set():
                raise
            led.count("send cancelled")
            _uncancel()
        except gorun.Closed:
            led.count("send closed")
            return


async def _consume(
    ch: gorun.Chan[int],
    never: gorun.Chan[int],
    out: list[int],
    rng: random.Random,
    led: Ledger,
    cancellable: bool,
) -> None:
    modes = (0, 1, 2, 3, 4, 5) if cancellable else (0, 1, 3, 5)  # 2 and 4 time out
    while not led.stop.is_set():
        mode = rng.choice(modes)
        try:
            if mode == 0:
                out.append(await ch.recv())
            elif mode == 1:
                v, ok = await ch.recv_ok()
                if not ok:
                    return
                out.append(v)  # type: ignore[arg-type]
            elif mode == 2:
                async with asyncio.timeout(rng.choice(TINY)):
                    out.append(await ch.recv())
            elif mode == 3:
                index, got = await gorun.select(ch.recv, never.recv, ch.recv_ok)
                if index == 2:
                    v, ok = got
                    if not ok:
                        return
                    out.append(v)
                else:
                    assert index == 0
                    out.append(got)
            elif mode == 4:
                async with asyncio.timeout(rng.choice(TINY)):
                    _, got = await gorun.select(never.recv, ch.recv)
                    out.append(got)
            else:
                try:
                    out.append(ch.recv_nowait())
                except gorun.WouldBlock:
                    await asyncio.sleep(0)
        except TimeoutError:
            led.count("recv timeout")
        except asyncio.CancelledError:
            if led.stop.is_set():
                raise
            led.count("recv cancelled")
            _uncancel()
        except gorun.Closed:
            return


def _produce_blocking(ch: gorun.Chan[int], values: range, rng: random.Random, led: Ledger) -> None:
    for v in values:
        if led.stop.is_set():
            return
        try:
            ch.send_blocking(v, timeout=rng.choice((None, *TINY)))
            led.sent.append(v)
        except TimeoutError:
            led.count("thread send timeout")
        except gorun.Closed:
            led.count("thread send closed")
            return


def _consume_blocking(ch: gorun.Chan[int], out: list[int], rng: random.Random, led: Ledger) -> None:
    while not led.stop.is_set():
        try:
            out.append(ch.recv_blocking(timeout=rng.choice((None, *TINY))))
        except TimeoutError:
            led.count("thread recv timeout")
        except gorun.Closed:
            return


async def _chaos(targets: list[gorun.Goroutine[None]], rng: random.Random, led: Ledger) -> None:
    while not led.stop.is_set():
        if rng.choice(targets).cancel("chaos"):
            led.count("chaos cancel")
        await asyncio.sleep(rng.choice((0.0, 1e-5, 1e-4)))


async def _settle(g: gorun.Goroutine[None]) -> None:
    # A goroutine ends cancelled if a cancel that lost a race is still pending at return.
    with contextlib.suppress(asyncio.CancelledError):
        await g


def run_exchange(cfg: Exchange) -> Ledger:
    """Run the exchange and check that the values received are exactly the values sent."""
    print(f"exchange: {cfg}")
    led = Ledger()
    seeds = random.Random(cfg.seed)
    ppw, cpw = cfg.producers_per_worker, cfg.consumers_per_worker
    n_producers = cfg.procs * ppw + cfg.thread_producers
    # Producer k offers k * STRIDE + 0, 1, ...: each consumer can check their order.
    ranges = [range(k * STRIDE, k * STRIDE + cfg.values) for k in range(1, n_producers + 1)]
    outs: list[list[int]] = [[] for _ in range(cfg.procs * cpw + cfg.thread_consumers)]
    for k, out in enumerate(outs):
        led.received[f"consumer {k}"] = out
    rngs = [random.Random(seeds.getrandbits(64)) for _ in range(len(ranges) + len(outs) + 1)]

    async def main() -> None:
        ch = gorun.Chan[int](cfg.cap)
        never = gorun.Chan[int]()  # a second case for selects, never ready
        pin = pinner(cfg.procs)
        all_sent = threading.Event()

        async def host(w: int) -> list[gorun.Goroutine[None]]:
            pin()  # one host per worker: their goroutines start on their own loops
            gs = []
            for k in range(w * ppw, (w + 1) * ppw):
                gs.append(gorun.go(_produce(ch, never, ranges[k], rngs[k], led), local=True))
            for k in range(w * cpw, (w + 1) * cpw):
                r = rngs[len(ranges) + k]
                consumer = _consume(ch, never, outs[k], r, led, cfg.cancel_receivers)
                gs.append(gorun.go(consumer, local=True))
            return gs

        async def closer() -> None:
            # Close once a quarter of the values went through, or all producers ended.
            goal = cfg.values * n_producers // 4
            while sum(map(len, outs)) < goal:
                if all_sent.is_set():
                    break
                await asyncio.sleep(0.0005)
            ch.close()

        threads = []
        for k in range(cfg.procs * ppw, n_producers):
            args = (ch, ranges[k], rngs[k], led)
            threads.append(threading.Thread(target=_produce_blocking, args=args))
        for k in range(cfg.procs * cpw, len(outs)):
            args2 = (ch, outs[k], rngs[len(ranges) + k], led)
            threads.append(threading.Thread(target=_consume_blocking, args=args2))
        hosts = [gorun.go(host(w)) for w in range(cfg.procs)]
        groups = [await h for h in hosts]
        producers = [g for gs in groups for g in gs[:ppw]]
        consumers = [g for gs in groups for g in gs[ppw:]]
        for t in threads:
            t.start()
        targets = producers + consumers if cfg.cancel_receivers else producers
        chaos = gorun.go(_chaos(targets, rngs[-1], led)) if cfg.chaos else None
        close = gorun.go(closer()) if cfg.close_early else None
        try:
            async with asyncio.timeout(cfg.deadline):
                for g in producers:
                    await _settle(g)
                for t in threads[: cfg.thread_producers]:
                    await asyncio.to_thread(t.join)
                all_sent.set()
                if close is not None:
                    await close
                else:
                    ch.close()
                for g in consumers:
                    await _settle(g)
                for t in threads[cfg.thread_producers :]:
                    await asyncio.to_thread(t.join)
        except TimeoutError:
            led.stop.set()
            with contextlib.suppress(gorun.Closed):
                ch.close()  # releases the plain threads
            print(f"TIMED OUT after {cfg.deadline}s (seed={cfg.seed}):")
            print(f"sent {len(led.sent)}, received {sum(map(len, outs))}")
            print(f"outcomes: {dict(led.outcomes)}")
            print(f"channel: {ch!r}, parked (senders, receivers): {parked(ch)}")
            print(f"producers not done: {[g for g in producers if not g.done()]}")
            print(f"consumers not done: {[g for g in consumers if not g.done()]}")
            print(f"threads alive: {[t.name for t in threads if t.is_alive()]}")
            raise AssertionError(f"exchange did not finish (seed={cfg.seed})") from None
        finally:
            led.stop.set()
            if chaos is not None:
                await _settle(chaos)
        assert not any(t.is_alive() for t in threads)

    gorun.run(main(), procs=cfg.procs)
    check_ledger(led, cfg)
    return led


def check_ledger(led: Ledger, cfg: Exchange) -> None:
    received = [v for out in led.received.values() for v in out]
    print(f"sent {len(led.sent)}, received {len(received)}, outcomes {dict(led.outcomes)}")
    sent = Counter(led.sent)
    got = Counter(received)
    assert len(sent) == len(led.sent), "a producer recorded a value twice"
    lost = sorted((sent - got).elements())
    extra = sorted((got - sent).elements())
    assert not lost, f"seed={cfg.seed}: {len(lost)} sent values never received: {lost[:10]}"
    assert not extra, f"seed={cfg.seed}: {len(extra)} received but not sent: {extra[:10]}"
    # Each consumer sees each producer's values in the order they were sent.
    for name, out in led.received.items() if not cfg.cancel_receivers else ():
        last: dict[int, int] = {}
        for v in out:
            producer = v // STRIDE
            assert last.get(producer, -1) < v, f"seed={cfg.seed}: {name} got {v} out of order"
            last[producer] = v
    if not cfg.close_early:
        assert led.outcomes["send closed"] == 0
        assert led.outcomes["thread send closed"] == 0


# -- select races --------------------------------------------------------------------------------


def race_two_selects(rounds: int, cap: int) -> Counter[str]:
    """Each round: two selects and a sender start together on three workers; exactly
    one select gets the value, the other sees done closed, and nothing is left behind."""
    pin = pinner(3)

    async def main() -> Counter[str]:
        jobs = [gorun.Chan[tuple[gorun.Chan[int], gorun.Chan[None]] | None](1) for _ in range(3)]
        results = gorun.Chan[tuple[int, Any]](3)
        go_barrier = threading.Barrier(3, timeout=TIMEOUT)

        async def selector(k: int) -> int:
            ident = pin()
            while (job := await jobs[k].recv()) is not None:
                ch, done = job
                go_barrier.wait()  # both selects and the send start at once
                await results.send((k, await gorun.select(ch.recv, done.recv_ok)))
            return ident

        async def sender() -> int:
            ident = pin()
            i = 0
            while (job := await jobs[2].recv()) is not None:
                ch, _ = job
                go_barrier.wait()
                await ch.send(i)
                await results.send((2, None))
                i += 1
            return ident

        gs = [gorun.go(selector(0)), gorun.go(selector(1)), gorun.go(sender())]
        seen: Counter[str] = Counter()
        for i in range(rounds):
            ch = gorun.Chan[int](cap)
            done = gorun.Chan[None]()
            for job in jobs:
                await job.send((ch, done))
            got = [await results.recv()]  # the sender, or the winning select
            got.append(await results.recv())
            done.close()
            got.append(await results.recv())
            by = dict(got)
            winners = [k for k in (0, 1) if by[k] == (0, i)]
            losers = [k for k in (0, 1) if by[k] == (1, (None, False))]
            assert len(winners) == 1, (i, got)
            assert len(losers) == 1, (i, got)
            assert by[2] is None
            assert empty(ch), (i, ch)
            assert parked(ch) == (0, 0), (i, ch)
            seen[f"select {winners[0]} won"] += 1
        for job in jobs:
            await job.send(None)
        idents = {await g for g in gs}
        assert len(idents) == 3
        return seen

    return gorun.run(main(), procs=PROCS)


def race_counterparties(rounds: int) -> Counter[str]:
    """A select offering (out.send, v) and inp.recv on one worker; a sender on inp and a
    receiver on out on two others, each also watching done. Exactly one of them meets
    the select; the other gets nothing (and sees done closed)."""
    pin = pinner(3)
    Job = tuple[gorun.Chan[int], gorun.Chan[int], gorun.Chan[None]]

    async def main() -> Counter[str]:
        jobs = [gorun.Chan[Job | None](1) for _ in range(3)]
        results = gorun.Chan[tuple[str, Any]](3)
        go_barrier = threading.Barrier(3, timeout=TIMEOUT)

        async def chooser() -> int:
            ident = pin()
            i = 0
            while (job := await jobs[0].recv()) is not None:
                inp, out, _ = job
                go_barrier.wait()
                await results.send(("select", await gorun.select((out.send, -i), inp.recv)))
                i += 1
            return ident

        async def sender() -> int:
            ident = pin()
            i = 0
            while (job := await jobs[1].recv()) is not None:
                inp, _, done = job
                go_barrier.wait()
                await results.send(("sender", await gorun.select((inp.send, i), done.recv_ok)))
                i += 1
            return ident

        async def receiver() -> int:
            ident = pin()
            while (job := await jobs[2].recv()) is not None:
                _, out, done = job
                go_barrier.wait()
                await results.send(("receiver", await gorun.select(out.recv, done.recv_ok)))
            return ident

        gs = [gorun.go(chooser()), gorun.go(sender()), gorun.go(receiver())]
        seen: Counter[str] = Counter()
        closed = (1, (None, False))
        for i in range(rounds):
            inp, out, done = gorun.Chan[int](), gorun.Chan[int](), gorun.Chan[None]()
            for job in jobs:
                await job.send((inp, out, done))
            got = dict([await results.recv(), await results.recv()])
            assert "select" in got, (i, got)
            done.close()
            got.update([await results.recv()])
            if got["select"] == (0, None):  # sent -i on out
                assert got["receiver"] == (0, -i), (i, got)
                assert got["sender"] == closed, (i, got)
                seen["send case"] += 1
            else:
                assert got["select"] == (1, i), (i, got)
                assert got["sender"] == (0, None), (i, got)
                assert got["receiver"] == closed, (i, got)
                seen["recv case"] += 1
            for ch in (inp, out):
                assert empty(ch), (i, ch)
                assert parked(ch) == (0, 0), (i, ch)
        for job in jobs:
            await job.send(None)
        assert len({await g for g in gs}) == 3
        return seen

    return gorun.run(main(), procs=PROCS)


# -- deadlines and dumps ------------------------------------------------------------------------


def thread_stacks() -> str:
    """The stack of every thread, as faulthandler writes it."""
    with tempfile.TemporaryFile("w+") as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        return f.read()


def dump_running(ctx: contextvars.Context | None = None, *, stacks: bool = False) -> str:
    """Print and return what is still running.

    ``gorun.dump()`` (a goroutine dump) where this gorun has it, run in *ctx* when given
    (a context copied inside the runtime under test, so the dump sees that runtime);
    else, or with *stacks*, the stack of every thread.
    """
    parts = []
    dump: Callable[[], str] | None = getattr(gorun, "dump", None)
    if dump is not None:
        try:
            parts.append(ctx.run(dump) if ctx is not None else dump())
        except Exception as exc:
            parts.append(f"gorun.dump() failed: {exc!r}")
            stacks = True
    if dump is None or stacks:
        parts.append(thread_stacks())
    text = "\n".join(parts)
    print(f"---- still running ----\n{text}\n---- end ----", flush=True)
    return text


@dataclasses.dataclass
class Watch:
    """What :func:`bounded` needs to report on and stop a run that missed its deadline;
    filled in by the run itself (see :func:`run_bounded`)."""

    ctx: contextvars.Context | None = None
    cancel: Callable[[], object] | None = None


def bounded(fn: Callable[[Watch], T], *, seed: int, limit: float, what: str) -> T:
    """Run ``fn(watch)`` on a thread of its own and return its result (or raise its error).

    If it has not returned within *limit* seconds, print a dump of what is still running,
    cancel the run's main task (``watch.cancel``, if the run set it), give it
    :data:`GRACE` seconds to unwind (printing every thread's stack if it does not), and
    fail the test, naming the seed.
    """
    watch = Watch()
    outcome: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(fn(watch))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name=f"stress: {what}", daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        print(f"{what}: no result after {limit:.0f}s (GORUN_STRESS_SEED={seed})")
        dump_running(watch.ctx)
        if watch.cancel is not None:
            watch.cancel()
        thread.join(GRACE)
        if thread.is_alive():
            print(f"{what}: still running {GRACE:.0f}s after its main task was cancelled")
            dump_running(stacks=True)
        pytest.fail(
            f"{what} did not finish within {limit:.0f}s (GORUN_STRESS_SEED={seed})",
            pytrace=False,
        )
    print(f"{what}: {time.monotonic() - start:.1f}s")
    if error:
        exc = error[0]
        exc.add_note(f"GORUN_STRESS_SEED={seed}")
        raise exc
    return outcome[0]


def run_bounded(
    main: Callable[[], Awaitable[T]],
    *,
    seed: int,
    limit: float,
    what: str,
    procs: int = PROCS,
) -> T:
    """``gorun.run(main(), procs=procs)`` under :func:`bounded`: past the deadline, the dump
    is taken inside that runtime and ``main`` is cancelled."""

    def run(watch: Watch) -> T:
        async def body() -> T:
            task = asyncio.current_task()
            assert task is not None
            loop = asyncio.get_running_loop()
            watch.ctx = contextvars.copy_context()
            watch.cancel = lambda: loop.call_soon_threadsafe(task.cancel)
            return await main()

        return gorun.run(body(), procs=procs)

    return bounded(run, seed=seed, limit=limit, what=what)


async def until(pred: Callable[[], bool], what: Callable[[], str]) -> None:
    """Yield to the loop until *pred* holds (another party has parked, arrived, ...);
    fail with ``what()`` if it does not within :data:`STEP_TIMEOUT`."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while not pred():
        if time.monotonic() > deadline:
            raise stuck(f"not within {STEP_TIMEOUT}s: {what()}")
        await asyncio.sleep(0)


def scheduler_state() -> str:
    """The current runtime's scheduling flags, a line per worker and one for the monitor
    (empty outside a gorun runtime): what a dump of goroutines cannot show when queued
    work is never taken (who is parked, woken, looking, and whether the monitor runs)."""
    from gorun._current import current_runtime

    rt: Any = current_runtime()
    if rt is None:
        return ""
    now = time.perf_counter()
    lines = [f"placement: looking (_nspinning)={rt._nspinning} closing={rt._closing}"]
    for w in rt.workers:
        lines.append(
            f"worker {w.index}: parked={w.parked} notified={w.notified} "
            f"spinning={w.spinning} runq={len(w.runq)} runnext={w.runnext is not None} "
            f"inbox={len(w.inbox)} wakeups={w.wakeups} started={w.started} "
            f"stolen={w.stolen} closed={w.closed}")
    mon = rt.sysmon
    alive = mon.thread is not None and mon.thread.is_alive()
    lines.append(f"monitor: alive={alive} idle={mon.idle} delay={mon.delay * 1e3:.1f} ms "
                 f"due in {(mon.due - now) * 1e3:.1f} ms")
    return "\n".join(lines)


def stuck(what: str) -> AssertionError:
    """A step did not happen in time: print what is still running (goroutines, the
    scheduler's flags and every thread's stack), and return the error to raise."""
    dump_running(stacks=True)
    state = scheduler_state()
    if state:
        print(f"---- scheduler ----\n{state}\n---- end ----", flush=True)
    return AssertionError(what)


# -- members on every worker and on plain threads ------------------------------------------------

AsyncJob = Callable[[], Awaitable[object]]
BlockingJob = Callable[[], object]


class Crew:
    """Members that run one job per round, all at once: ``per_worker`` goroutines on each
    worker, ``loop_threads`` plain threads each running an asyncio loop of its own (a
    foreign loop), and ``blocking_threads`` plain threads without a loop (for the
    ``_blocking`` calls).

    Each member takes its job from a channel of its own and sends back ``(index,
    result)``; a job that raises sends back the exception. Plain threads run in a copy
    of the creating goroutine's context, so ``gorun.go()`` there joins its runtime.
    """

    def __init__(
        self, procs: int = PROCS, per_worker: int = 2, loop_threads: int = 2,
        blocking_threads: int = 1,
    ) -> None:
        self.procs = procs
        self.per_worker = per_worker
        self.n_async = procs * per_worker + loop_threads
        self.n_loop_threads = loop_threads
        self.n_blocking = blocking_threads
        self.jobs: list[gorun.Chan[Any]] = [
            gorun.Chan[Any](1) for _ in range(self.n_async + blocking_threads)
        ]
        self.results = gorun.Chan[tuple[int, object]](len(self.jobs))
        self.goroutines: list[gorun.Goroutine[None]] = []
        self.threads: list[threading.Thread] = []
        self.worker_threads: set[int] = set()

    @property
    def size(self) -> int:
        return len(self.jobs)

    async def _member(self, i: int) -> None:
        async for job in self.jobs[i]:
            try:
                result = await job()
            except Exception as exc:
                result = exc
            await self.results.send((i, result))

    def _blocking_member(self, i: int) -> None:
        while True:
            try:
                job = self.jobs[i].recv_blocking()
            except gorun.Closed:
                return
            try:
                result = job()
            except Exception as exc:
                result = exc
            self.results.send_blocking((i, result))

    def _loop_member(self, i: int) -> None:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            runner.run(self._member(i))

    async def start(self) -> None:
        pin = pinner(self.procs)

        async def host(w: int) -> tuple[int, list[gorun.Goroutine[None]]]:
            ident = pin()  # one host per worker: the members it starts stay there
            first = w * self.per_worker
            return ident, [
                gorun.go(self._member(i), name=f"member-{i}", local=True)
                for i in range(first, first + self.per_worker)
            ]

        hosts = [gorun.go(host(w), name=f"host-{w}") for w in range(self.procs)]
        for h in hosts:
            ident, gs = await h
            self.worker_threads.add(ident)
            self.goroutines += gs
        assert len(self.worker_threads) == self.procs
        first = self.procs * self.per_worker
        for i in range(first, first + self.n_loop_threads):
            self._thread(self._loop_member, i)
        for i in range(self.n_async, self.size):
            self._thread(self._blocking_member, i)

    def _thread(self, target: Callable[[int], None], i: int) -> None:
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(target, i), name=f"member-{i}", daemon=True)
        t.start()
        self.threads.append(t)

    @property
    def async_members(self) -> range:
        """The indexes of the members that run coroutine jobs (goroutines, foreign loops)."""
        return range(self.n_async)

    @property
    def blocking_members(self) -> range:
        """The indexes of the plain-thread members without a loop (plain function jobs)."""
        return range(self.n_async, self.size)

    def dispatch(self, jobs: Sequence[AsyncJob | BlockingJob]) -> None:
        """Give member *i* the job ``jobs[i]``: a coroutine function for the members in
        :attr:`async_members`, a plain function for those in :attr:`blocking_members`."""
        assert len(jobs) == self.size, (len(jobs), self.size)
        for ch, job in zip(self.jobs, jobs, strict=True):
            ch.send_nowait(job)

    async def collect(self) -> list[object]:
        """Every member's result for this round, in member order; an AssertionError that a
        job raised is raised here."""
        results: list[object] = [None] * self.size
        missing = set(range(self.size))
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                while missing:
                    i, result = await self.results.recv()
                    results[i] = result
                    missing.discard(i)
        except TimeoutError:
            raise stuck(f"members {sorted(missing)}: no result within {STEP_TIMEOUT}s") from None
        for result in results:
            if isinstance(result, AssertionError):
                raise result
        return results

    async def round(self, jobs: Sequence[AsyncJob | BlockingJob]) -> list[object]:
        """:meth:`dispatch`, then :meth:`collect`."""
        self.dispatch(jobs)
        return await self.collect()

    async def stop(self) -> None:
        for jobs in self.jobs:
            with contextlib.suppress(gorun.Closed):
                jobs.close()
        for g in self.goroutines:
            await g
        for t in self.threads:
            await asyncio.to_thread(t.join, STEP_TIMEOUT)
            assert not t.is_alive(), t
