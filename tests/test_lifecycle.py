"""Shutdown, Ctrl-C, the drop-in entry points (policy, Runner, python -m gorun)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

import gorun

TIMEOUT = 10.0
SRC = str(Path(gorun.__file__).resolve().parent.parent)


def _gorun_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("gorun-")}


def test_run_leaves_no_thread_behind() -> None:
    before = _gorun_threads()

    async def main() -> int:
        assert len(_gorun_threads() - before) >= 3  # 3 workers, maybe a monitor
        return gorun.procs()

    assert gorun.run(main(), procs=4) == 4
    assert _gorun_threads() == before


def test_shutdown_cancels_running_goroutines_and_runs_their_finally() -> None:
    procs = 3
    cleaned: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(procs, timeout=TIMEOUT)

    started: list[int] = []

    async def forever(i: int) -> None:
        with lock:
            started.append(i)
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await asyncio.sleep(0)  # finally blocks may still await on their loop
            with lock:
                cleaned.append(i)

    async def spread_then_forever(i: int) -> None:
        barrier.wait()  # one per worker
        await forever(i)

    async def main() -> None:
        for i in range(procs - 1):
            gorun.go(spread_then_forever(i))
        for i in range(procs - 1, 10):
            gorun.go(forever(i))
        barrier.wait()
        await asyncio.sleep(0)

    before = _gorun_threads()
    gorun.run(main(), procs=procs)
    # Every goroutine that started ran its finally block; one still queued at shutdown
    # is cancelled before it starts, so its body never runs.
    assert set(range(procs - 1)) <= set(started)
    assert sorted(cleaned) == sorted(started)
    assert _gorun_threads() == before


def test_close_without_shutdown_asyncgens_still_cancels_and_joins() -> None:
    before = _gorun_threads()
    cleaned = threading.Event()
    started = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            cleaned.set()

    async def main() -> None:
        g = gorun.go(forever())
        assert started.wait(TIMEOUT)  # blocks the home loop: forever runs on the worker
        assert not g.done()

    loop = gorun.new_event_loop(procs=2)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert cleaned.is_set()
    assert _gorun_threads() == before


def test_go_during_shutdown_is_an_error() -> None:
    errors: list[BaseException] = []

    async def noop() -> None:
        pass

    started = threading.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            coro = noop()
            try:
                gorun.go(coro)
            except RuntimeError as exc:
                errors.append(exc)

    async def main() -> None:
        gorun.go(stubborn())
        assert started.wait(TIMEOUT)  # blocks the home loop: stubborn runs on the worker

    gorun.run(main(), procs=2)
    assert errors
    assert "shutting down" in str(errors[0])


def test_asyncio_runner_with_loop_factory() -> None:
    async def main() -> tuple[str, int]:
        return type(asyncio.get_running_loop()).__name__, gorun.procs()

    with asyncio.Runner(loop_factory=lambda: gorun.new_event_loop(procs=2)) as runner:
        assert runner.run(main()) == ("Loop", 2)
        assert runner.run(main()) == ("Loop", 2)  # the same loop, run again


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_loop_factory() -> None:
    async def main() -> bool:
        return isinstance(asyncio.get_running_loop(), gorun.Loop)

    assert asyncio.run(main(), loop_factory=gorun.new_event_loop) is True  # type: ignore[call-arg]


def test_policy_and_install() -> None:
    async def main() -> tuple[bool, int]:
        return isinstance(asyncio.get_running_loop(), gorun.Loop), gorun.procs()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in 3.14
        old = asyncio.get_event_loop_policy()
    expect = DeprecationWarning if sys.version_info >= (3, 14) else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.set_event_loop_policy(gorun.GoPolicy(procs=2))
            assert asyncio.run(main()) == (True, 2)
            gorun.install(procs=3)
            assert asyncio.run(main()) == (True, 3)
        kinds = {w.category for w in caught}
        if expect is None:
            assert not caught, [str(w.message) for w in caught]
        else:
            assert expect in kinds
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(old)


def test_import_warns_about_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import gorun; print(gorun.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


EXECUTOR_AT_EXIT = """
import asyncio, gorun

async def offload():
    return await asyncio.get_running_loop().run_in_executor(None, lambda: 1)

print(sum(g.wait(30) for g in [gorun.go(offload()) for _ in range(4)]))
"""


def test_the_default_runtime_closes_its_executors_at_exit() -> None:
    # The default runtime is closed as the interpreter exits, when CPython 3.12+ no
    # longer starts threads: its workers' default executors are joined all the same,
    # with nothing on stderr.
    out = subprocess.run(
        [sys.executable, "-c", EXECUTOR_AT_EXIT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "4\n"
    assert out.stderr == ""


APP = """
import asyncio, sys, threading

async def child(i):
    await asyncio.sleep(0)
    return i * i

async def main():
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(child(i)) for i in range(10)]
    total = sum(await asyncio.gather(*tasks))
    print(type(loop).__module__ + "." + type(loop).__name__, total, sys.argv[1:])

asyncio.run(main())
"""


@pytest.mark.parametrize("hook", ["policy", "factory"])
def test_python_m_gorun_runs_an_unmodified_app(tmp_path: Path, hook: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {**os.environ, "PYTHONPATH": SRC, "GORUN_HOOK": hook}
    out = subprocess.run(
        [sys.executable, "-W", "error", "-m", "gorun", "--procs", "3", str(app), "a", "--b"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gorun.Loop", "285", "['a',", "'--b']"]
    assert out.stderr == ""


def test_python_m_gorun_runs_a_module(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)])}
    out = subprocess.run(
        [sys.executable, "-m", "gorun", "-m", "myapp", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gorun.Loop", "285", "['x']"]


UVLOOP_APP = """
import asyncio, uvloop

async def child():
    await asyncio.sleep(0)
    return isinstance(asyncio.get_running_loop(), uvloop.Loop)

async def main():
    tasks = [asyncio.create_task(child()) for _ in range(10)]
    print(isinstance(asyncio.get_running_loop(), uvloop.Loop), all(await asyncio.gather(*tasks)))

asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["option", "env"])
def test_python_m_gorun_with_uvloop_runs_the_app_on_uvloop(tmp_path: Path, how: str) -> None:
    pytest.importorskip("uvloop")
    app = tmp_path / "app.py"
    app.write_text(UVLOOP_APP)
    env = {**os.environ, "PYTHONPATH": SRC}
    args = [sys.executable, "-m", "gorun", "--procs", "2"]
    if how == "option":
        args += ["--loop", "uvloop"]
    else:
        env["GORUN_LOOP"] = "uvloop"
    out = subprocess.run([*args, str(app)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no program to run"),
        (["--procs", "0", "x.py"], "at least 1"),
        (["--procs", "lots", "x.py"], "--procs must be a positive integer"),
        (["--loop", "tokio", "x.py"], "unknown loop 'tokio'"),
        (["--frobnicate", "x.py"], "unknown option '--frobnicate'"),
        (["missing.py"], "can't open file 'missing.py'"),
    ],
)
def test_python_m_gorun_bad_usage(args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gorun", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert out.returncode == 2
    assert message in out.stderr


CTRL_C = r"""
import asyncio, sys, threading
import gorun

async def forever(i, wg):
    try:
        wg.done()
        await asyncio.get_running_loop().create_future()
    finally:
        sys.stdout.write(f"cleaned {i}\n")
        sys.stdout.flush()

async def main():
    wg = gorun.WaitGroup()
    wg.add(4)
    for i in range(4):
        gorun.go(forever(i, wg))
    await wg.wait()  # all four started: each has a finally block to run at shutdown
    print("ready", flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        print("main cancelled", flush=True)

try:
    gorun.run(main(), procs=3)
except KeyboardInterrupt:
    left = [t.name for t in threading.enumerate() if t.name.startswith("gorun-")]
    print("KeyboardInterrupt", left, flush=True)
    sys.exit(3)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_main_and_shuts_down(tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(textwrap.dedent(CTRL_C))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    lines = out.splitlines()
    assert proc.returncode == 3, (out, err)
    assert "main cancelled" in lines
    assert sorted(line for line in lines if line.startswith("cleaned")) == [
        f"cleaned {i}" for i in range(4)
    ]
    assert lines[-1] == "KeyboardInterrupt []"


def test_close_serves_finally_blocks_that_await_the_home_loop() -> None:
    # A worker goroutine's finally awaits a goroutine of the home loop: close() without
    # asyncio.run's shutdown sequence must run the home loop while it cancels.
    before = _gorun_threads()
    outcome: list[str] = []
    started = threading.Event()

    async def main() -> None:
        home_g = gorun.go(asyncio.sleep(10), local=True)

        async def worker_side() -> None:
            started.set()
            try:
                await asyncio.sleep(10)
            finally:
                try:
                    await home_g
                except asyncio.CancelledError:
                    outcome.append("home goroutine cancelled")

        gorun.go(worker_side())
        assert started.wait(TIMEOUT)  # blocks the home loop: worker_side runs elsewhere

    loop = gorun.new_event_loop(procs=2)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert outcome == ["home goroutine cancelled"]
    assert _gorun_threads() == before
