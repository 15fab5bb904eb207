"""The pytest plugin: ``pytest --gorun`` puts pytest-asyncio and anyio tests on gorun loops.

Each case writes a small test suite with ``pytester``, runs it with and without ``--gorun``,
and checks the outcomes (which must not change) and the loop each test ran on, which the
sample tests print as ``LOOP <where> <loop class> procs=<N>`` lines (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from importlib.metadata import entry_points

import pytest

from gorun import pytest_plugin

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(120)

GORUN_LOOP = "gorun.Loop"


def _stock_loop() -> str:
    loop = asyncio.new_event_loop()
    try:
        return f"{type(loop).__module__}.{type(loop).__qualname__}"
    finally:
        loop.close()


#: The class of the loops asyncio makes by default, as the sample tests print it.
STOCK_LOOP = _stock_loop()

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""
#: For runs with pytest-asyncio disabled, which would not know its option.
INI_NO_PYTEST_ASYNCIO = """\
[pytest]
filterwarnings = error
"""

# A module every sample imports: describe() prints the class and worker count of the loop.
DESCRIBE = """\
import asyncio


def describe(where):
    loop = asyncio.get_running_loop()
    kind = f"{type(loop).__module__}.{type(loop).__qualname__}"
    print(f"\\nLOOP {where} {kind} procs={getattr(loop, 'procs', '-')}")
"""

PYTEST_ASYNCIO_SAMPLE = """\
import asyncio

import pytest
import pytest_asyncio

from describe import describe


@pytest_asyncio.fixture
async def fixture_loop():
    describe("fixture")
    yield asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_loop(fixture_loop):
    describe("test")
    assert asyncio.get_running_loop() is fixture_loop


@pytest.mark.asyncio(loop_scope="module")
async def test_module_scope():
    describe("module-scope")


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 2])
async def test_tasks_and_queues(n):
    queue = asyncio.Queue()

    async def produce():
        for i in range(10 * n):
            await queue.put(i)
        await queue.put(None)

    async def consume():
        total = 0
        while (item := await queue.get()) is not None:
            total += item
        return total

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        consumer = tg.create_task(consume())
    assert consumer.result() == sum(range(10 * n))


@pytest.mark.asyncio
async def test_fails():
    await asyncio.sleep(0)
    assert False, "fails on purpose"


@pytest.mark.asyncio
async def test_skipped():
    pytest.skip("skipped on purpose")


def test_sync():
    pass
"""

# A suite with its own loop factories: under --gorun their names (and so test IDs and
# marker selections) stay, and each runs gorun's loop.
OWN_FACTORIES_CONFTEST = """\
import asyncio


def pytest_asyncio_loop_factories(config, item):
    return {"first": asyncio.new_event_loop, "second": asyncio.new_event_loop}
"""

OWN_FACTORIES_SAMPLE = """\
import pytest

from describe import describe


@pytest.mark.asyncio
async def test_both():
    describe("both")


@pytest.mark.asyncio(loop_factories=["second"])
async def test_second_only():
    describe("second-only")
"""

ANYIO_SAMPLE = """\
import asyncio

import anyio
import pytest

from describe import describe

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=["asyncio", pytest.param(("asyncio", {"debug": True}), id="asyncio-debug")]
)
def anyio_backend(request):
    return request.param


@pytest.fixture
async def fixture_loop():
    describe("fixture")
    return asyncio.get_running_loop()


async def test_loop(fixture_loop, anyio_backend_name, anyio_backend_options):
    describe("test")
    assert asyncio.get_running_loop() is fixture_loop
    assert anyio_backend_name == "asyncio"
    print(f"\\nOPTIONS {sorted(anyio_backend_options)}")


async def test_streams_and_locks():
    send, receive = anyio.create_memory_object_stream[int](5)
    lock = anyio.Lock()
    seen = []

    async def consume():
        async with receive:
            async for item in receive:
                async with lock:
                    seen.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with send:
            for i in range(20):
                await send.send(i)
    assert seen == list(range(20))


async def test_fails():
    await anyio.sleep(0)
    assert False, "fails on purpose"


async def test_skipped():
    pytest.skip("skipped on purpose")
"""

TRIO_SAMPLE = """\
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "trio"


async def test_trio(anyio_backend):
    import trio

    await trio.sleep(0)
    print(f"\\nBACKEND {anyio_backend!r}")
"""


# The opt-ins without the plugin, as docs/guide/testing.md shows them.
OPT_IN_PYTEST_ASYNCIO_CONFTEST = """\
import asyncio

import gorun


def pytest_asyncio_loop_factories(config, item):
    return {"asyncio": asyncio.new_event_loop, "gorun": gorun.new_event_loop}
"""

OPT_IN_PYTEST_ASYNCIO_SAMPLE = """\
import pytest

from describe import describe


@pytest.mark.asyncio
async def test_loop(request):
    describe(request.node.callspec.id)
"""

OPT_IN_ANYIO_SAMPLE = """\
import functools

import gorun
import pytest

from describe import describe

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return ("asyncio", {"loop_factory": functools.partial(gorun.new_event_loop, procs=2)})


async def test_loop():
    describe("test")
"""


def _write_suite(pytester: pytest.Pytester, ini: str = INI, **files: str) -> None:
    pytester.makeini(ini)
    pytester.makepyfile(describe=DESCRIBE, **files)


def _loop_lines(output: list[str]) -> dict[str, set[str]]:
    """``{where: {"<loop class> procs=<N>", ...}}`` from the sample tests' LOOP lines."""
    found: dict[str, set[str]] = {}
    for line in output:
        if line.startswith("LOOP "):
            _, where, rest = line.split(" ", 2)
            found.setdefault(where, set()).add(rest)
    return found


def test_entry_point() -> None:
    """The plugin is installed as the ``gorun`` pytest11 entry point."""
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("gorun") == "gorun.pytest_plugin", (
        "the gorun pytest11 entry point is missing: reinstall gorun (pip install -e .)"
    )


def test_help_lists_options(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--gorun *", "*--gorun-procs=N*", "*--gorun-loop=KIND*"])


@pytest.mark.parametrize("gorun", [False, True], ids=["stock", "gorun"])
def test_pytest_asyncio(pytester: pytest.Pytester, gorun: bool) -> None:
    _write_suite(pytester, test_sample=PYTEST_ASYNCIO_SAMPLE)
    args = ["-s", "-p", "no:anyio", "-p", "no:cacheprovider"]
    if gorun:
        args += ["--gorun", "--gorun-procs", "3"]
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=5, failed=1, skipped=1)
    expected = f"{GORUN_LOOP} procs=3" if gorun else f"{STOCK_LOOP} procs=-"
    assert _loop_lines(result.outlines) == {
        "fixture": {expected},
        "test": {expected},
        "module-scope": {expected},
    }
    # The same test IDs either way: one loop factory adds no parameter ID.
    result.stdout.no_fnmatch_line("*gorun]*")
    header = "gorun: asyncio tests run on gorun loops (procs=3, loop=asyncio)"
    if gorun:
        result.stdout.fnmatch_lines([header])
    else:
        result.stdout.no_fnmatch_line("gorun:*")


@pytest.mark.parametrize("gorun", [False, True], ids=["stock", "gorun"])
def test_pytest_asyncio_own_factories(pytester: pytest.Pytester, gorun: bool) -> None:
    _write_suite(pytester, test_sample=OWN_FACTORIES_SAMPLE)
    pytester.makeconftest(OWN_FACTORIES_CONFTEST)
    args = ["-s", "-rA", "-p", "no:anyio", "-p", "no:cacheprovider"]
    if gorun:
        args += ["--gorun", "--gorun-procs", "2"]
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_sample.py::test_both?first?",
            "PASSED test_sample.py::test_both?second?",
            "PASSED test_sample.py::test_second_only",
        ]
    )
    expected = f"{GORUN_LOOP} procs=2" if gorun else f"{STOCK_LOOP} procs=-"
    assert _loop_lines(result.outlines) == {"both": {expected}, "second-only": {expected}}


@pytest.mark.parametrize("gorun", [False, True], ids=["stock", "gorun"])
def test_anyio(pytester: pytest.Pytester, gorun: bool) -> None:
    _write_suite(pytester, INI_NO_PYTEST_ASYNCIO, test_sample=ANYIO_SAMPLE)
    args = ["-s", "-rA", "-p", "no:asyncio", "-p", "no:cacheprovider"]
    if gorun:
        args += ["--gorun", "--gorun-procs", "2"]
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=4, failed=2, skipped=2)
    # Test IDs come from the fixture's parameters, not from the rewritten values.
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_sample.py::test_loop?asyncio?",
            "PASSED test_sample.py::test_loop?asyncio-debug?",
            "PASSED test_sample.py::test_streams_and_locks?asyncio?",
            "PASSED test_sample.py::test_streams_and_locks?asyncio-debug?",
        ]
    )
    expected = f"{GORUN_LOOP} procs=2" if gorun else f"{STOCK_LOOP} procs=-"
    assert _loop_lines(result.outlines) == {"fixture": {expected}, "test": {expected}}
    options = {line for line in result.outlines if line.startswith("OPTIONS ")}
    if gorun:
        assert options == {"OPTIONS ['loop_factory']", "OPTIONS ['debug', 'loop_factory']"}
    else:
        assert options == {"OPTIONS []", "OPTIONS ['debug']"}


def test_anyio_trio_untouched(pytester: pytest.Pytester) -> None:
    pytest.importorskip("trio")  # imported here, so that the in-process run keeps it
    _write_suite(pytester, INI_NO_PYTEST_ASYNCIO, test_sample=TRIO_SAMPLE)
    result = pytester.runpytest("-s", "-p", "no:asyncio", "--gorun", "--gorun-procs", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["BACKEND 'trio'"])


def test_default_procs_from_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GORUN_PROCS", "2")
    _write_suite(pytester, test_sample=PYTEST_ASYNCIO_SAMPLE)
    result = pytester.runpytest("-s", "-p", "no:anyio", "--gorun", "-k", "test_loop")
    result.assert_outcomes(passed=1)
    assert _loop_lines(result.outlines)["test"] == {f"{GORUN_LOOP} procs=2"}


def test_uvloop_workers(pytester: pytest.Pytester) -> None:
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    if have_uvloop:
        # Imported here, so that the in-process run does not import (and unload) it.
        importlib.import_module("uvloop")
    _write_suite(pytester, test_sample=PYTEST_ASYNCIO_SAMPLE)
    args = ["-p", "no:anyio", "--gorun", "--gorun-procs", "2", "--gorun-loop", "uvloop"]
    result = pytester.runpytest(*args, "-k", "test_loop or test_tasks_and_queues")
    if not have_uvloop:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--gorun: *needs uvloop*"])
        return
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["gorun: asyncio tests run on gorun loops (procs=2, loop=uvloop)"])


def test_without_gorun_nothing_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    config = pytester.parseconfigure()
    assert config.pluginmanager.get_plugin(pytest_plugin.LOOPS_PLUGIN_NAME) is None
    assert config.pluginmanager.get_plugin(pytest_plugin.PYTEST_ASYNCIO_PLUGIN_NAME) is None


def test_with_gorun_hooks_are_registered(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    config = pytester.parseconfigure("--gorun", "--gorun-procs", "2")
    loops = config.pluginmanager.get_plugin(pytest_plugin.LOOPS_PLUGIN_NAME)
    assert isinstance(loops, pytest_plugin.GorunLoops)
    assert (loops.procs, loops.loop) == (2, "asyncio")
    assert isinstance(
        config.pluginmanager.get_plugin(pytest_plugin.PYTEST_ASYNCIO_PLUGIN_NAME),
        pytest_plugin.PytestAsyncioLoops,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gorun", "--gorun-procs", "0"], "*--gorun-procs: must be a positive integer*"),
        (["--gorun", "--gorun-procs", "x"], "*--gorun-procs: must be a positive integer*"),
        (["--gorun", "--gorun-loop", "trio"], "*--gorun-loop: invalid choice*"),
        (["--gorun-procs", "2"], "*--gorun-procs and --gorun-loop need --gorun*"),
    ],
)
def test_bad_options(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_procs_environment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GORUN_PROCS", "many")
    pytester.makeini(INI)
    result = pytester.runpytest("--gorun")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gorun: GORUN_PROCS must be a positive integer*"])


def test_anyio_backend_values() -> None:
    loops = pytest_plugin.GorunLoops(procs=2, loop="asyncio")
    factory = loops.loop_factory
    assert loops.anyio_backend("asyncio") == ("asyncio", {"loop_factory": factory})
    assert loops.anyio_backend(("asyncio", {"debug": True, "loop_factory": None})) == (
        "asyncio",
        {"debug": True, "loop_factory": factory},
    )
    others: list[object] = ["trio", ("trio", {}), ("asyncio",), 42]
    for other in others:
        assert loops.anyio_backend(other) is other


def test_opt_in_pytest_asyncio_without_plugin(pytester: pytest.Pytester) -> None:
    _write_suite(pytester, test_sample=OPT_IN_PYTEST_ASYNCIO_SAMPLE)
    pytester.makeconftest(OPT_IN_PYTEST_ASYNCIO_CONFTEST)
    result = pytester.runpytest("-s", "-rA", "-p", "no:gorun", "-p", "no:anyio")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        ["PASSED test_sample.py::test_loop?asyncio?", "PASSED test_sample.py::test_loop?gorun?"]
    )
    found = _loop_lines(result.outlines)
    assert found["asyncio"] == {f"{STOCK_LOOP} procs=-"}
    assert len(found["gorun"]) == 1
    assert next(iter(found["gorun"])).startswith(f"{GORUN_LOOP} procs=")


def test_opt_in_anyio_without_plugin(pytester: pytest.Pytester) -> None:
    _write_suite(pytester, INI_NO_PYTEST_ASYNCIO, test_sample=OPT_IN_ANYIO_SAMPLE)
    result = pytester.runpytest("-s", "-p", "no:gorun", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)
    assert _loop_lines(result.outlines) == {"test": {f"{GORUN_LOOP} procs=2"}}
