"""The pitfall guards: gorun.dump(), deadlock detection, no_leaks(), the race guard.

Deadlocks are real ones (a lone receive, two goroutines waiting on each other, a select
with every case blocked...); the no-false-positive cases block on timers, executor work,
I/O and plain threads, which gorun must not mistake for a deadlock.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

import gorun
from gorun.testing import no_leaks

pytest_plugins = ["pytester"]

TIMEOUT = 10.0


async def _until_dump_shows(*waits: str) -> None:
    """Yield until ``gorun.dump()`` shows every one of *waits* (each goroutine has reached
    the wait the test needs it in); fail, with the dump, if not within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        text = gorun.dump()
        missing = [w for w in waits if w not in text]
        if not missing:
            return
        assert time.monotonic() < deadline, f"not in the dump after {TIMEOUT}s: {missing}\n{text}"
        await asyncio.sleep(0.001)


# -- dump ------------------------------------------------------------------------------------


def test_dump_shows_each_goroutine_its_wait_and_its_stack() -> None:
    texts: list[str] = []

    async def main() -> None:
        ch: gorun.Chan[int] = gorun.Chan()
        other: gorun.Chan[int] = gorun.Chan()
        wg = gorun.WaitGroup()
        wg.add(1)
        mu = gorun.Mutex()
        await mu.lock()
        parked = gorun.WaitGroup()
        parked.add(4)

        async def reader() -> None:
            parked.done()
            await ch.recv()

        async def selector() -> None:
            parked.done()
            await gorun.select(ch.recv, (other.send, 1))

        async def waiter() -> None:
            parked.done()
            await wg.wait()

        async def locker() -> None:
            parked.done()
            await mu.lock()

        gs = [
            gorun.go(reader(), name="the-reader"),
            gorun.go(selector(), name="the-selector"),
            gorun.go(waiter(), name="the-waiter"),
            gorun.go(locker(), name="the-locker"),
        ]
        await parked.wait()
        await _until_dump_shows(  # each one past its done(), in its wait
            "'the-reader' [chan receive",
            "'the-selector' [select",
            "'the-waiter' [WaitGroup.wait",
            "'the-locker' [Mutex.lock",
        )
        texts.append(await asyncio.to_thread(gorun.dump))  # from a plain thread too
        texts.append(gorun.dump())
        for g in gs:
            g.cancel()

    gorun.run(main(), procs=2)
    for text in texts:
        assert "goroutine" in text
        assert "'the-reader' [chan receive" in text
        assert "'the-selector' [select" in text
        assert "send <Chan cap=0" in text
        assert "'the-waiter' [WaitGroup.wait" in text
        assert "'the-locker' [Mutex.lock" in text
        assert "reader at " in text
        assert "Chan.recv at " in text
        assert "task 'Task-" in text  # the main coroutine, a plain task on the home loop
        assert "[running" in texts[1]  # dump() from main itself: main is running


def test_dump_with_no_runtime_says_so() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import gorun; print(gorun.dump(), end='')"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout == "gorun: no runtime is running\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_dump_signal_prints_the_dump_to_stderr() -> None:
    code = textwrap.dedent(
        """
        import asyncio, os, signal, sys, time, gorun

        class Tee:
            # sys.stderr, keeping a copy of what goes through it
            def __init__(self, out):
                self.out, self.text = out, ""
            def write(self, s):
                self.text += s
                return self.out.write(s)
            def flush(self):
                self.out.flush()

        async def until(pred, what):
            deadline = time.monotonic() + 10
            while not pred():
                if time.monotonic() > deadline:
                    raise AssertionError(f"not within 10s: {what}")
                await asyncio.sleep(0.001)

        async def main():
            ch = gorun.Chan()
            async def stuck():
                await ch.recv()
            g = gorun.go(stuck(), name="waiting-one")
            wait = "'waiting-one' [chan receive"
            await until(lambda: wait in gorun.dump(), "the goroutine parked")
            sys.stderr = tee = Tee(sys.stderr)
            os.kill(os.getpid(), signal.SIGUSR1)
            await until(lambda: wait in tee.text, "the dump written to stderr")
            sys.stderr = tee.out
            g.cancel()

        gorun.run(main(), procs=2, dump_signal=signal.SIGUSR1)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "'waiting-one' [chan receive" in out.stderr


def test_dump_signal_is_checked() -> None:
    async def main() -> None:
        pass

    with pytest.raises(ValueError, match="12345"):
        gorun.run(main(), dump_signal=12345)


# -- deadlock ----------------------------------------------------------------------------------


def _deadlock(main: Any, **kwargs: Any) -> str:
    with pytest.raises(gorun.Deadlock) as info:
        gorun.run(main(), **kwargs)
    text = str(info.value)
    assert text.startswith("gorun: all goroutines are asleep - deadlock!")
    return text


@pytest.mark.parametrize("procs", [1, 2, 4])
def test_a_lone_receive_is_a_deadlock(procs: int) -> None:
    async def main() -> None:
        await gorun.Chan[int]().recv()

    text = _deadlock(main, procs=procs)
    assert "[chan receive" in text
    assert "main at " in text


def test_two_goroutines_waiting_on_each_other() -> None:
    async def main() -> None:
        a: gorun.Chan[int] = gorun.Chan()
        b: gorun.Chan[int] = gorun.Chan()

        async def first() -> None:
            await a.recv()
            await b.send(1)

        async def second() -> None:
            await b.recv()
            await a.send(1)

        g1 = gorun.go(first(), name="first")
        g2 = gorun.go(second(), name="second")
        await g1
        await g2

    text = _deadlock(main, procs=2)
    assert "'first' [chan receive" in text
    assert "'second' [chan receive" in text
    assert "[awaiting goroutine" in text  # main, waiting for first


def test_async_for_over_a_channel_nobody_sends_on() -> None:
    got: list[int] = []

    async def main() -> None:
        ch: gorun.Chan[int] = gorun.Chan()

        async def sender() -> None:
            await ch.send(1)  # then returns without closing: the loop below never ends

        gorun.go(sender())
        async for v in ch:
            got.append(v)

    text = _deadlock(main, procs=2)
    assert got == [1]
    assert "[chan receive" in text
    assert "__anext__" in text


def test_a_select_with_every_case_blocked() -> None:
    async def main() -> None:
        a: gorun.Chan[int] = gorun.Chan()
        b: gorun.Chan[int] = gorun.Chan(1)
        await b.send(0)  # full: a send case blocks
        await gorun.select(a.recv, (b.send, 1))

    assert "[select" in _deadlock(main, procs=2)


def test_waitgroup_mutex_and_once_deadlocks() -> None:
    async def waitgroup() -> None:
        wg = gorun.WaitGroup()
        wg.add(1)
        await wg.wait()

    async def mutex() -> None:
        mu = gorun.Mutex()
        await mu.lock()
        await mu.lock()

    async def once() -> None:
        o = gorun.Once()
        ch: gorun.Chan[int] = gorun.Chan()

        async def fn() -> None:
            await ch.recv()

        gs = [gorun.go(o.do(fn)) for _ in range(3)]
        for g in gs:
            await g

    assert "[WaitGroup.wait" in _deadlock(waitgroup, procs=2)
    assert "[Mutex.lock" in _deadlock(mutex, procs=2)
    assert "[Once.do" in _deadlock(once, procs=2)


def test_gather_and_taskgroup_of_deadlocked_goroutines() -> None:
    async def gather() -> None:
        ch: gorun.Chan[int] = gorun.Chan()
        await asyncio.gather(gorun.go(ch.recv()), gorun.go(ch.recv()))

    async def taskgroup() -> None:
        ch: gorun.Chan[int] = gorun.Chan()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ch.recv())

    _deadlock(gather, procs=2)
    _deadlock(taskgroup, procs=2)


def test_main_can_see_the_deadlock_as_a_cancellation_and_clean_up() -> None:
    cleaned: list[bool] = []

    async def main() -> None:
        try:
            await gorun.Chan[int]().recv()
        finally:
            cleaned.append(True)

    _deadlock(main, procs=2)
    assert cleaned == [True]


def test_no_deadlock_while_a_goroutine_sleeps() -> None:
    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan()

        async def later() -> None:
            await asyncio.sleep(0.2)  # longer than the deadlock grace
            await ch.send(7)

        gorun.go(later())
        return await ch.recv()

    assert gorun.run(main(), procs=2) == 7


def test_no_deadlock_while_executor_work_is_pending() -> None:
    release = threading.Event()

    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan()

        async def worker() -> None:
            await asyncio.to_thread(release.wait, TIMEOUT)
            await ch.send(3)

        gorun.go(worker())
        threading.Timer(0.2, release.set).start()
        return await ch.recv()

    assert gorun.run(main(), procs=2) == 3


def test_no_deadlock_while_a_goroutine_awaits_io() -> None:
    a, b = socket.socketpair()

    async def main() -> bytes:
        ch: gorun.Chan[bytes] = gorun.Chan()

        async def reader() -> None:
            reader_, writer = await asyncio.open_connection(sock=a)
            await ch.send(await reader_.readexactly(2))
            writer.close()

        gorun.go(reader())
        threading.Timer(0.2, b.sendall, args=(b"hi",)).start()
        return await ch.recv()

    try:
        assert gorun.run(main(), procs=2) == b"hi"
    finally:
        b.close()


def test_no_deadlock_while_a_plain_thread_uses_the_channel() -> None:
    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan()
        started = threading.Event()

        def producer() -> None:
            started.set()
            threading.Event().wait(0.2)
            ch.send_blocking(5, timeout=TIMEOUT)

        threading.Thread(target=producer).start()
        started.wait(TIMEOUT)
        return await ch.recv()

    assert gorun.run(main(), procs=2) == 5


HANGS = """
import os, signal, gorun
signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
signal.alarm(1)
async def main():
    await gorun.Chan().recv()
gorun.run(main(), procs=2{extra})
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM")
@pytest.mark.parametrize(
    ("extra", "env", "code"),
    [
        ("", {}, 1),  # detected: Deadlock raised, exit status 1
        (", deadlock=False", {}, 3),  # not detected: still blocked when the alarm fires
        ("", {"GORUN_DEADLOCK": "0"}, 3),
    ],
)
def test_deadlock_detection_can_be_switched_off(extra: str, env: dict[str, str], code: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", HANGS.format(extra=extra)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )
    assert out.returncode == code, out.stderr
    assert ("Deadlock" in out.stderr) == (code == 1)


def test_no_deadlock_while_another_thread_lives() -> None:
    # A thread outside gorun that will reach the channel only through
    # call_soon_threadsafe: while it lives, no deadlock is declared.
    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan()
        loop = asyncio.get_running_loop()
        threading.Timer(0.2, loop.call_soon_threadsafe, args=(ch.send_nowait, 9)).start()
        return await ch.recv()  # send_nowait needs a receiver waiting: this one

    assert gorun.run(main(), procs=2) == 9


def test_deadlock_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        pass

    with pytest.raises(TypeError, match="deadlock must be"):
        gorun.run(main(), deadlock="yes")  # type: ignore[arg-type]
    monkeypatch.setenv("GORUN_DEADLOCK", "maybe")
    with pytest.raises(ValueError, match="GORUN_DEADLOCK"):
        gorun.run(main())


def test_deadlock_through_asyncio_runner() -> None:
    async def main() -> None:
        await gorun.Chan[int]().recv()

    with asyncio.Runner(loop_factory=gorun.new_event_loop) as runner, pytest.raises(
        gorun.Deadlock
    ):
        runner.run(main())


# -- no_leaks ------------------------------------------------------------------------------------


async def _leaky() -> None:
    ch: gorun.Chan[int] = gorun.Chan()

    async def stuck() -> None:
        await ch.recv()

    gorun.go(stuck(), name="leaked-reader")
    await _until_dump_shows("'leaked-reader' [chan receive")


def test_no_leaks_reports_goroutines_cancelled_at_shutdown() -> None:
    with pytest.raises(AssertionError) as info, no_leaks(grace=0.05):
        gorun.run(_leaky(), procs=2)
    text = str(info.value)
    assert "1 goroutine(s) started inside no_leaks() outlived it" in text
    assert "'leaked-reader' [chan receive" in text
    assert "when their main coroutine returned" in text


def test_no_leaks_async_form_reports_a_goroutine_still_running() -> None:
    async def main() -> str:
        ch: gorun.Chan[int] = gorun.Chan()

        async def stuck() -> None:
            with_closed = False
            try:
                await ch.recv()
            except gorun.Closed:
                with_closed = True
            assert with_closed

        try:
            async with no_leaks(grace=0.05):
                gorun.go(stuck(), name="still-here")
        except AssertionError as exc:
            return str(exc)
        finally:
            ch.close()
        return ""

    text = gorun.run(main(), procs=2)
    assert "still running 0.05 s after the block ended" in text
    assert "'still-here'" in text


def test_no_leaks_passes_clean_code_and_waits_out_the_grace() -> None:
    async def short() -> None:
        await asyncio.sleep(0.05)

    async def joined() -> None:
        await gorun.go(short())

    async def left_to_finish() -> None:
        async with no_leaks(grace=2):
            gorun.go(short())  # not awaited, but done within the grace

    with no_leaks(grace=2):
        gorun.run(joined(), procs=2)
        gorun.run(left_to_finish(), procs=2)

    @no_leaks(grace=2)
    def sync_test() -> int:
        gorun.run(joined(), procs=2)
        return 1

    assert sync_test() == 1

    @no_leaks(grace=2)
    async def async_test() -> int:
        gorun.go(short())
        return 2

    assert gorun.run(async_test(), procs=2) == 2


def test_no_leaks_ignores_goroutines_started_before_it() -> None:
    async def main() -> None:
        ch: gorun.Chan[int] = gorun.Chan()
        g = gorun.go(ch.recv())
        async with no_leaks(grace=0):
            await asyncio.sleep(0)
        await ch.send(1)
        await g

    gorun.run(main(), procs=2)


def test_no_leaks_lets_the_blocks_own_error_through_and_checks_grace() -> None:
    def leak_then_fail() -> None:
        gorun.run(_leaky(), procs=2)
        raise KeyError("mine")

    with pytest.raises(KeyError), no_leaks(grace=0):
        leak_then_fail()
    with pytest.raises(ValueError, match="grace"):
        no_leaks(grace=-1)
    nl = no_leaks()
    with nl, pytest.raises(RuntimeError, match="reentrant"), nl:
        pass


LEAKY_SUITE = """
import asyncio, time, gorun

async def _stuck(ch):
    await ch.recv()

def test_leaks():
    async def main():
        gorun.go(_stuck(gorun.Chan()), name="left-behind")
        deadline = time.monotonic() + 10
        while "'left-behind' [chan receive" not in gorun.dump():  # until it has parked
            assert time.monotonic() < deadline, gorun.dump()
            await asyncio.sleep(0.001)
    gorun.run(main(), procs=2)

def test_clean():
    async def main():
        await gorun.go(asyncio.sleep(0))
    gorun.run(main(), procs=2)
"""


def test_pytest_option_fails_leaking_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample=LEAKY_SUITE)
    result = pytester.runpytest_subprocess("--gorun-no-leaks", "--gorun-leak-grace", "0.05")
    result.assert_outcomes(passed=2, errors=1)  # test_leaks passes, then fails its teardown
    result.stdout.fnmatch_lines(["*'left-behind' [[]chan receive*"])
    plain = pytester.runpytest_subprocess()
    plain.assert_outcomes(passed=2)


def test_pytest_fixture_fails_a_leaking_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sample=LEAKY_SUITE.replace("def test_leaks():", "def test_leaks(gorun_no_leaks):")
    )
    result = pytester.runpytest_subprocess("--gorun-leak-grace", "0.05")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*"])


# -- the race guard -----------------------------------------------------------------------------


def _on_another_worker(body: Any) -> Any:
    """Run *body(home_future)* in a goroutine on worker 1 while main awaits the future."""

    async def main() -> Any:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        started = threading.Event()
        go_on: gorun.Chan[None] = gorun.Chan()

        async def other() -> None:
            started.set()  # main blocks its loop until then: this runs on worker 1
            await go_on.recv()
            await body(fut)

        g = gorun.go(other(), name="intruder")
        assert started.wait(TIMEOUT)
        await go_on.send(None)
        try:
            await g
        except RuntimeError as exc:
            return exc
        finally:
            if not fut.done():
                fut.cancel()
        return None

    return main


def test_debug_mode_names_the_owner_the_goroutine_and_the_fix() -> None:
    async def main() -> BaseException | None:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        started = threading.Event()
        go_on: gorun.Chan[None] = gorun.Chan()

        async def intruder() -> None:
            started.set()  # main blocks its loop until then: this runs on worker 1
            await go_on.recv()
            fut.set_result(1)  # a future of worker 0 that main awaits, set from worker 1

        # A callback, so that set_result() from the wrong thread schedules one.
        fut.add_done_callback(lambda _f: None)
        g = gorun.go(intruder(), name="intruder")
        assert started.wait(TIMEOUT)
        await go_on.send(None)
        # Main does not await fut: the failed call_soon() loses the wake-up of whoever
        # awaits it (as with stock asyncio's own debug check), so main would wait for ever.
        try:
            await g
        except RuntimeError as exc:
            return exc
        return None

    text = str(gorun.run(main(), procs=2, debug=True))
    assert "gorun worker 0's loop" in text
    assert "'intruder' on gorun worker 1" in text
    assert "local=True" in text
    assert "gorun.Chan" in text
    assert "gorun.on_every_worker()" in text  # the per-worker fix, for servers


def test_awaiting_another_workers_future_explains_the_error() -> None:
    async def body(fut: asyncio.Future[int]) -> None:
        await fut  # asyncio: "attached to a different loop"

    exc = gorun.run(_on_another_worker(body)(), procs=2)
    assert isinstance(exc, RuntimeError)
    assert "different loop" in str(exc)
    notes = " ".join(getattr(exc, "__notes__", []))
    assert "gorun worker 1" in notes
    assert "local=True" in notes
    assert "one per worker" in notes


def _produce_later(ch: gorun.Chan[int]) -> None:
    threading.Event().wait(0.2)
    ch.send_blocking(1, timeout=TIMEOUT)


def test_no_deadlock_while_a_thread_pool_or_unawaited_executor_work_runs() -> None:
    import concurrent.futures

    async def pool() -> int:
        ch: gorun.Chan[int] = gorun.Chan()
        with concurrent.futures.ThreadPoolExecutor() as ex:
            ex.submit(_produce_later, ch)
            return await ch.recv()

    async def executor() -> int:
        ch: gorun.Chan[int] = gorun.Chan()
        asyncio.get_running_loop().run_in_executor(None, _produce_later, ch)
        return await ch.recv()

    assert gorun.run(pool(), procs=2) == 1
    assert gorun.run(executor(), procs=2) == 1


def test_no_deadlock_while_another_runtime_has_goroutines() -> None:
    async def later(ch: gorun.Chan[int]) -> None:
        await asyncio.sleep(0.2)
        await ch.send(4)

    async def main() -> int:
        ch: gorun.Chan[int] = gorun.Chan()
        t = threading.Thread(target=lambda: gorun.go(later(ch)))  # the default runtime
        t.start()
        t.join()
        return await ch.recv()

    assert gorun.run(main(), procs=2) == 4


def test_an_idle_runtime_does_not_hide_a_deadlock() -> None:
    # go() from a plain thread starts the default runtime, whose threads then live as long
    # as the process. Once its goroutines are done it can wake nobody: a deadlock of
    # another runtime is still declared.
    async def nothing() -> int:
        return 1

    assert gorun.go(nothing()).wait(timeout=10) == 1
    default = gorun._current.default_runtime()
    assert default.home is None
    assert default.num_goroutine() == 0  # counted out before wait() returned

    async def main() -> None:
        await gorun.Chan[int]().recv()

    assert "[chan receive" in _deadlock(main, procs=2)
