"""Stress: the randomized checks of test_chan and test_select, at scale.

Hundreds of thousands of values through one channel, from producers and consumers on
every worker and on plain threads, with waiting operations cancelled at random (tiny
timeouts, ``Goroutine.cancel()`` from another goroutine): every value sent is received
exactly once, and nothing else is. Then thousands of rounds of selects on different
workers racing for the same values.

The other stress modules (``test_stress_*.py``) use what is defined here: the
seed, the opt-in, :func:`bounded` (every stress run has a deadline, and one that
misses it prints what is still running and fails) and :class:`Crew` (members on every
worker and on plain threads that run one job per round).

These run only when asked for, with ``pytest -m stress`` (or ``GORUN_STRESS=1``). The
seed is ``GORUN_STRESS_SEED`` if set, else random; it is printed either way (``-s``
shows it live) and named in every failure.
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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

import gorun
import gorun._select
from tests.test_chan import Exchange, pinner, run_exchange
from tests.test_select import race_counterparties, race_two_selects

T = TypeVar("T")

pytestmark = [pytest.mark.stress, pytest.mark.timeout(900)]

PROCS = 4
#: Seconds a run that missed its deadline gets to unwind once its main task is cancelled.
GRACE = 20.0
#: Seconds one step of a stress test may wait for another party (a bound, not a delay).
STEP_TIMEOUT = 30.0

VALUES = 15_000  # per producer: 10 producers, 150,000 values offered per run


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    markexpr = request.config.getoption("markexpr", "") or ""
    if "stress" not in markexpr and not os.environ.get("GORUN_STRESS"):
        pytest.skip("a stress test: run with -m stress (or GORUN_STRESS=1)")


@pytest.fixture
def seed() -> int:
    env = os.environ.get("GORUN_STRESS_SEED")
    value = int(env) if env else random.randrange(2**32)
    print(f"GORUN_STRESS_SEED={value}")
    gorun._select._random.seed(value)  # select's choices among ready cases, too
    return value


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


def stuck(what: str) -> AssertionError:
    """A step did not happen in time: print what is still running, and return the error
    to raise."""
    dump_running()
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


# -- the exchange and select races ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "close_early", "cancel_receivers"),
    [
        (0, False, True),
        (1, False, True),
        (64, False, True),
        (0, True, True),
        (0, False, False),
        (8, True, False),
    ],
)
def test_stress_no_value_lost_or_duplicated(
    seed: int, cap: int, close_early: bool, cancel_receivers: bool
) -> None:
    limit = 120.0
    cfg = Exchange(
        seed=seed,
        values=VALUES,
        cap=cap,
        producers_per_worker=2,
        consumers_per_worker=2,
        thread_producers=2,
        thread_consumers=2,
        close_early=close_early,
        cancel_receivers=cancel_receivers,
        deadline=limit + 5,  # the exchange's own report comes after the dump
    )
    bounded(lambda _: run_exchange(cfg), seed=seed, limit=limit, what="exchange")


def test_stress_no_value_lost_or_duplicated_on_many_workers(seed: int) -> None:
    limit = 120.0
    cfg = Exchange(seed=seed, values=VALUES // 2, cap=2, procs=8, deadline=limit + 5)
    bounded(lambda _: run_exchange(cfg), seed=seed, limit=limit, what="exchange, 8 workers")


@pytest.mark.parametrize("cap", [0, 1])
def test_stress_two_selects_race_for_one_value(seed: int, cap: int) -> None:
    seen = bounded(
        lambda _: race_two_selects(6_000, cap), seed=seed, limit=120.0, what="two selects"
    )
    print(dict(seen))


def test_stress_select_raced_by_both_counterparties(seed: int) -> None:
    seen = bounded(
        lambda _: race_counterparties(6_000), seed=seed, limit=120.0, what="select raced"
    )
    print(dict(seen))
