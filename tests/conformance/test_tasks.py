"""TaskGroup, gather, queues and synchronization primitives: same on every backend."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)


def test_taskgroup_collects_results(runner: Backend) -> None:
    async def case() -> list[int]:
        async def square(i: int) -> int:
            await asyncio.sleep(0)
            return i * i

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(square(i)) for i in range(5)]
        return [t.result() for t in tasks]

    assert runner.run(case) == [0, 1, 4, 9, 16]


def test_taskgroup_failure_cancels_siblings(runner: Backend) -> None:
    async def case() -> tuple[list[str], list[str], bool, bool]:
        log: list[str] = []
        sibling_waiting = asyncio.Event()

        async def sibling() -> None:
            try:
                sibling_waiting.set()
                await asyncio.get_running_loop().create_future()
            finally:
                log.append("sibling finally")

        async def failing() -> None:
            await sibling_waiting.wait()
            raise ValueError("child failed")

        errors: list[str] = []
        grouped = False
        try:
            async with asyncio.TaskGroup() as tg:
                s = tg.create_task(sibling())
                tg.create_task(failing())
        except ExceptionGroup as eg:
            grouped = True
            errors = [repr(e) for e in eg.exceptions]
        return log, errors, grouped, s.cancelled()

    assert runner.run(case) == (["sibling finally"], ["ValueError('child failed')"], True, True)


def test_gather_return_exceptions(runner: Backend) -> None:
    async def case() -> list[object]:
        async def ok(v: int) -> int:
            await asyncio.sleep(0)
            return v

        async def boom() -> int:
            await asyncio.sleep(0)
            raise ValueError("boom")

        results = await asyncio.gather(
            ok(1), boom(), asyncio.sleep(0, result=3), return_exceptions=True
        )
        return [repr(r) if isinstance(r, BaseException) else r for r in results]

    assert runner.run(case) == [1, "ValueError('boom')", 3]


def test_gather_raises_first_exception_others_keep_running(runner: Backend) -> None:
    async def case() -> tuple[str, bool, str]:
        release = asyncio.Event()

        async def slow() -> str:
            await release.wait()
            return "slow done"

        async def boom() -> str:
            raise ValueError("boom")

        slow_task = asyncio.create_task(slow())
        outcome = "no error"
        try:
            await asyncio.gather(slow_task, boom())
        except ValueError as exc:
            outcome = str(exc)
        still_running = not slow_task.done()
        release.set()
        return outcome, still_running, await slow_task

    assert runner.run(case) == ("boom", True, "slow done")


def test_queue_producer_consumer(runner: Backend) -> None:
    async def case() -> tuple[list[int], bool, bool]:
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=2)
        overfull = False

        async def producer() -> None:
            nonlocal overfull
            for i in range(10):
                await queue.put(i)
                overfull = overfull or queue.qsize() > 2
            await queue.put(None)

        async def consumer() -> list[int]:
            got: list[int] = []
            while (item := await queue.get()) is not None:
                got.append(item)
                queue.task_done()
            queue.task_done()
            return got

        producing = asyncio.create_task(producer())
        consuming = asyncio.create_task(consumer())
        await queue.join()
        await producing
        return await consuming, queue.empty(), overfull

    assert runner.run(case) == (list(range(10)), True, False)


def test_lock_serializes_critical_sections(runner: Backend) -> None:
    async def case() -> tuple[list[str], bool]:
        lock = asyncio.Lock()
        log: list[str] = []

        async def critical(tag: str) -> None:
            async with lock:
                log.append(f"{tag} in")
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                log.append(f"{tag} out")

        await asyncio.gather(critical("a"), critical("b"), critical("c"))
        return log, lock.locked()

    assert runner.run(case) == (["a in", "a out", "b in", "b out", "c in", "c out"], False)


def test_event_wakes_every_waiter(runner: Backend) -> None:
    async def case() -> tuple[bool, list[int], list[int], bool]:
        event = asyncio.Event()
        all_waiting = asyncio.Event()
        waiting = 0
        woke: list[int] = []

        async def waiter(i: int) -> None:
            nonlocal waiting
            waiting += 1
            if waiting == 3:
                all_waiting.set()
            await event.wait()
            woke.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await all_waiting.wait()
        before = (event.is_set(), list(woke))
        event.set()
        await asyncio.gather(*tasks)
        event.clear()
        return before[0], before[1], woke, event.is_set()

    assert runner.run(case) == (False, [], [0, 1, 2], False)


def test_semaphore_bounds_concurrency(runner: Backend) -> None:
    async def case() -> tuple[int, list[int], str]:
        sem = asyncio.Semaphore(2)
        active = 0
        peak = 0
        done: list[int] = []

        async def worker(i: int) -> None:
            nonlocal active, peak
            async with sem:
                active += 1
                peak = max(peak, active)
                for _ in range(3):
                    await asyncio.sleep(0)
                active -= 1
                done.append(i)

        await asyncio.gather(*(worker(i) for i in range(5)))
        bounded = asyncio.BoundedSemaphore(1)
        try:
            bounded.release()
            over_release = "allowed"
        except ValueError:
            over_release = "ValueError"
        return peak, sorted(done), over_release

    assert runner.run(case) == (2, [0, 1, 2, 3, 4], "ValueError")


def test_condition_wait_for_predicate(runner: Backend) -> None:
    async def case() -> tuple[list[int], bool]:
        cond = asyncio.Condition()
        items: list[int] = []
        waiting = asyncio.Event()

        async def consumer() -> list[int]:
            async with cond:
                waiting.set()
                await cond.wait_for(lambda: len(items) >= 3)
                return list(items)

        task = asyncio.create_task(consumer())
        await waiting.wait()
        for i in range(3):
            async with cond:
                items.append(i)
                cond.notify_all()
        return await task, cond.locked()

    assert runner.run(case) == ([0, 1, 2], False)
