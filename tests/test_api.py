"""The public surface: exported names, docstrings, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import pickle
import threading
import types
import warnings
from typing import Any

import pytest

import gorun

DOCUMENTED = {
    "Chan",
    "Closed",
    "Deadlock",
    "GoPolicy",
    "Goroutine",
    "Group",
    "Listeners",
    "Loop",
    "Mutex",
    "Once",
    "RWMutex",
    "Server",
    "Stats",
    "Ticker",
    "Timer",
    "WaitGroup",
    "WorkerStats",
    "WouldBlock",
    "after",
    "create_server",
    "dump",
    "go",
    "install",
    "listen",
    "new_event_loop",
    "num_goroutine",
    "on_every_worker",
    "procs",
    "run",
    "select",
    "start_server",
    "stats",
}


def test_public_names_are_exactly_the_documented_ones() -> None:
    assert set(gorun.__all__) == DOCUMENTED
    # Submodules (gorun.testing, and gorun.pytest_plugin once pytest has loaded it) are
    # not names of the package's namespace API; "@py_*" are pytest's assertion rewriting.
    public = {
        n
        for n in dir(gorun)
        if not n.startswith(("_", "@")) and not inspect.ismodule(getattr(gorun, n))
    }
    assert public == DOCUMENTED


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(gorun, name)
    assert inspect.getdoc(obj), f"gorun.{name} has no docstring"


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_every_public_name_says_it_lives_in_gorun(name: str) -> None:
    # A traceback shows `gorun.Closed`, not the private module that defines it.
    assert getattr(gorun, name).__module__ == "gorun"


def test_public_exceptions_pickle_by_their_public_name() -> None:
    for exc in (gorun.Closed("closed"), gorun.WouldBlock("full"), gorun.Deadlock("x")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc)
        assert back.args == exc.args


def test_api_reference_lists_the_package() -> None:
    from pathlib import Path

    api = Path(__file__).parent.parent / "docs" / "api.md"
    assert "::: gorun" in api.read_text()


async def _answer() -> int:
    return 42


def _coro() -> types.CoroutineType[Any, Any, int]:
    return _answer()  # type: ignore[return-value]


def _no_never_awaited(fn: object) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert callable(fn)
        fn()
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], caught


@pytest.mark.parametrize("procs", [0, -1])
def test_run_rejects_non_positive_procs(procs: int) -> None:
    coro = _coro()
    with pytest.raises(ValueError, match="at least 1"):
        gorun.run(coro, procs=procs)
    # closed, so no "never awaited" warning
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


@pytest.mark.parametrize("procs", ["2", 2.0, True])
def test_run_rejects_non_int_procs(procs: object) -> None:
    coro = _coro()
    with pytest.raises(TypeError, match="positive int"):
        gorun.run(coro, procs=procs)  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_run_rejects_unknown_loop() -> None:
    coro = _coro()
    with pytest.raises(ValueError, match="unknown loop 'tokio'"):
        gorun.run(coro, loop="tokio")
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_new_event_loop_rejects_bad_procs() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        gorun.new_event_loop(procs=0)
    with pytest.raises(ValueError, match="at least 1"):
        gorun.GoPolicy(0)


def test_env_procs_must_be_an_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GORUN_PROCS", "many")
    with pytest.raises(ValueError, match="GORUN_PROCS must be a positive integer"):
        gorun.new_event_loop()
    monkeypatch.setenv("GORUN_PROCS", "0")
    with pytest.raises(ValueError, match="GORUN_PROCS must be at least 1"):
        gorun.new_event_loop()


def test_env_loop_must_be_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GORUN_LOOP", "trio")
    with pytest.raises(ValueError, match="unknown GORUN_LOOP 'trio'"):
        gorun.new_event_loop()


def test_env_procs_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GORUN_PROCS", "3")

    async def main() -> tuple[int, int]:
        return gorun.procs(), len(gorun.stats().workers)

    assert gorun.run(main()) == (3, 3)


def test_go_rejects_a_coroutine_function_with_a_hint() -> None:
    with pytest.raises(TypeError, match=r"did you mean go\(_answer\(\.\.\.\)\)"):
        gorun.go(_answer)  # type: ignore[arg-type]


def test_go_rejects_other_awaitables() -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        with pytest.raises(TypeError, match="needs a coroutine object, got Future"):
            gorun.go(fut)  # type: ignore[arg-type]

    gorun.run(main(), procs=1)


def test_go_bad_name_closes_the_coroutine() -> None:
    def call() -> None:
        with pytest.raises(TypeError, match="name must be a str"):
            gorun.go(_answer(), name=7)  # type: ignore[arg-type]

    _no_never_awaited(call)


def test_go_local_outside_gorun_is_an_error_and_closes_the_coroutine() -> None:
    def call() -> None:
        with pytest.raises(RuntimeError, match="no gorun loop runs on this thread"):
            gorun.go(_answer(), local=True)

    _no_never_awaited(call)


def test_run_inside_a_running_loop_is_an_error() -> None:
    async def main() -> None:
        coro = _coro()
        with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
            gorun.run(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    asyncio.run(main())


def test_wait_on_an_event_loop_thread_is_an_error() -> None:
    async def main() -> None:
        g = gorun.go(_answer())
        with pytest.raises(RuntimeError, match="would block the event loop"):
            g.wait()
        assert await g == 42

    gorun.run(main(), procs=2)


def test_result_before_done_is_an_invalid_state() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def blocked() -> None:
            await gate.wait()

        g = gorun.go(blocked(), local=True)
        with pytest.raises(asyncio.InvalidStateError):
            g.result()
        with pytest.raises(asyncio.InvalidStateError):
            g.exception()
        gate.set()
        await g
        assert g.result() is None
        assert g.exception() is None

    gorun.run(main(), procs=1)


def test_a_handle_keeps_each_state_apart_whatever_a_goroutine_returns() -> None:
    # A handle keeps a pending goroutine's coroutine, a running one's neighbour in its
    # worker's list and a done one's result in one slot, and the same for its Context
    # and worker, its queue time and other neighbour. Results that look like what the
    # slot holds at other times, goroutines that end in an order that unlinks the head,
    # the middle and the tail of the list, and a cancel before the start must all come
    # out as they went in.
    async def main() -> list[Any]:
        gates = [asyncio.Event() for _ in range(4)]
        sibling = gorun.go(asyncio.sleep(0), local=True)
        await sibling
        results: list[Any] = [None, sibling, contextvars.copy_context(), 0.5]

        async def child(k: int) -> Any:
            await gates[k].wait()
            return results[k]

        gs = [gorun.go(child(k), local=True, name=f"child-{k}") for k in range(4)]
        never = gorun.go(child(0))  # queued: cancelled before any worker starts it
        assert "pending" in repr(never)
        assert never.cancel()
        reprs = [repr(g) for g in gs]
        for k in (1, 3, 0, 2):  # the middle, the head (newest), the tail, the last
            gates[k].set()
            await gs[k]
            assert gorun.num_goroutine() == sum(not g.done() for g in gs)
            assert f"'child-{k}'" not in gorun.dump()
        return [reprs, [g.result() for g in gs], never.cancelled(), repr(never)]

    reprs, got, cancelled, never = gorun.run(main(), procs=1)
    assert all("running on worker 0" in r for r in reprs)
    assert got[0] is None
    assert isinstance(got[1], gorun.Goroutine)
    assert isinstance(got[2], contextvars.Context)
    assert got[3] == 0.5
    assert cancelled
    assert "cancelled" in never


def test_stats_without_a_runtime_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gorun import _current

    monkeypatch.setattr(_current, "_default_runtime", None)
    errors: list[BaseException] = []

    def plain() -> None:
        try:
            gorun.stats()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=plain)
    t.start()
    t.join()
    assert errors
    assert "no gorun runtime" in str(errors[0])
