"""pytest plugin: ``pytest --gorun`` runs a suite's asyncio tests on gorun loops.

The plugin is registered through the ``pytest11`` entry point ``gorun``, so it is active
wherever gorun is installed (``-p no:gorun`` turns it off). Without ``--gorun`` it only adds
its command-line options and changes nothing else.

With ``--gorun``, every test that pytest-asyncio or anyio's pytest plugin runs on asyncio gets
a [`gorun.Loop`][gorun.Loop] instead of a stock event loop, without any change to the suite:

* **pytest-asyncio** (1.4 or later): the plugin implements pytest-asyncio's
  ``pytest_asyncio_loop_factories`` hook as a wrapper. A suite that configures no loop
  factories of its own gets a single factory, ``gorun``, so test IDs stay as they were. A suite
  that configures factories itself keeps their names (and so its
  ``@pytest.mark.asyncio(loop_factories=[...])`` selections), each mapped to gorun's factory.
* **anyio** (asyncio backend): the value of the ``anyio_backend`` fixture, wherever the suite
  defines it, is rewritten from ``"asyncio"`` or ``("asyncio", options)`` to
  ``("asyncio", {**options, "loop_factory": ...})``, the backend option anyio passes to
  ``asyncio.Runner``. Other backends (trio) are left alone. Test IDs do not change.

``--gorun-procs N`` sets the worker count of every loop (default ``GORUN_PROCS``, else the CPU
count), ``--gorun-loop asyncio|uvloop`` the kind of every loop (default ``GORUN_LOOP``,
else ``asyncio``). Both need ``--gorun``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Callable, Generator, Mapping
from typing import Any

import pytest

from ._config import LOOP_KINDS, resolve_loop, resolve_procs
from ._loop import new_event_loop
from .testing import DEFAULT_GRACE as DEFAULT_LEAK_GRACE
from .testing import no_leaks

#: Name under which ``--gorun`` registers `GorunLoops` with pytest's plugin manager.
LOOPS_PLUGIN_NAME = "gorun-loops"
#: Name under which ``--gorun`` registers its pytest-asyncio hook (pytest-asyncio >= 1.4 only).
PYTEST_ASYNCIO_PLUGIN_NAME = "gorun-pytest-asyncio"
#: Name of the loop factory given to pytest-asyncio when the suite configures none.
FACTORY_NAME = "gorun"
#: The oldest pytest-asyncio with the ``pytest_asyncio_loop_factories`` hook.
PYTEST_ASYNCIO_MIN = "1.4"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]



def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--gorun``, ``--gorun-procs`` and ``--gorun-loop``."""
    group = parser.getgroup("gorun", "gorun: run asyncio tests on gorun loops")
    group.addoption(
        "--gorun",
        action="store_true",
        default=False,
        dest="gorun",
        help="run the asyncio tests of pytest-asyncio and anyio (asyncio backend) on gorun loops",
    )
    group.addoption(
        "--gorun-procs",
        type=_positive_int,
        default=None,
        dest="gorun_procs",
        metavar="N",
        help="with --gorun: workers per loop (default: $GORUN_PROCS, else the CPU count)",
    )
    group.addoption(
        "--gorun-loop",
        choices=LOOP_KINDS,
        default=None,
        dest="gorun_loop",
        metavar="KIND",
        help="with --gorun: the kind of every loop, asyncio or uvloop (default: $GORUN_LOOP, "
        "else asyncio)",
    )
    group.addoption(
        "--gorun-no-leaks",
        action="store_true",
        default=False,
        dest="gorun_no_leaks",
        help="fail every test that leaves goroutines running (the gorun_no_leaks fixture)",
    )
    group.addoption(
        "--gorun-leak-grace",
        type=_grace,
        default=None,
        dest="gorun_leak_grace",
        metavar="SECONDS",
        help=f"how long goroutines get to finish after a test (default {DEFAULT_LEAK_GRACE})",
    )


def _grace(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {value!r}")
    return seconds


def pytest_configure(config: pytest.Config) -> None:
    """With ``--gorun``, register the hooks that put asyncio tests on gorun loops."""
    procs: int | None = config.getoption("gorun_procs")
    loop: str | None = config.getoption("gorun_loop")
    if not config.getoption("gorun"):
        if procs is not None or loop is not None:
            raise pytest.UsageError("--gorun-procs and --gorun-loop need --gorun")
        return
    try:
        procs = resolve_procs(procs)
        loop = resolve_loop(loop)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise pytest.UsageError(f"--gorun: {exc}") from None
    loops = GorunLoops(procs=procs, loop=loop)
    config.pluginmanager.register(loops, LOOPS_PLUGIN_NAME)
    if hasattr(config.hook, "pytest_asyncio_loop_factories"):
        config.pluginmanager.register(
            PytestAsyncioLoops(loops.loop_factory), PYTEST_ASYNCIO_PLUGIN_NAME
        )
    elif _pytest_asyncio_active(config):
        raise pytest.UsageError(
            f"--gorun needs pytest-asyncio {PYTEST_ASYNCIO_MIN} or later (for its "
            "pytest_asyncio_loop_factories hook); upgrade it, or disable it with "
            "-p no:asyncio"
        )


def _pytest_asyncio_active(config: pytest.Config) -> bool:
    return any(
        getattr(plugin, "__name__", None) == "pytest_asyncio.plugin"
        for plugin in config.pluginmanager.get_plugins()
    )


class GorunLoops:
    """The hooks ``--gorun`` registers: gorun loops for anyio, and the report header.

    Args:
        procs: Worker count of every loop.
        loop: The kind of every loop, ``"asyncio"`` or ``"uvloop"``.
    """

    def __init__(self, *, procs: int, loop: str) -> None:
        self.procs = procs
        self.loop = loop
        #: Creates the loop of each test: ``gorun.new_event_loop`` with these settings.
        self.loop_factory: LoopFactory = functools.partial(new_event_loop, procs=procs, loop=loop)

    def pytest_report_header(self) -> str:
        """Say in the header that asyncio tests run on gorun, and with which settings."""
        return f"gorun: asyncio tests run on gorun loops (procs={self.procs}, loop={self.loop})"

    def anyio_backend(self, backend: object) -> object:
        """*backend* (an ``anyio_backend`` value) with gorun's loop factory if it is asyncio.

        ``"asyncio"`` and ``("asyncio", options)`` become ``("asyncio", options)`` with
        ``loop_factory`` set; anything else is returned as it is.
        """
        if backend == "asyncio":
            return ("asyncio", {"loop_factory": self.loop_factory})
        if (
            isinstance(backend, tuple)
            and len(backend) == 2
            and backend[0] == "asyncio"
            and isinstance(backend[1], dict)
        ):
            return (backend[0], {**backend[1], "loop_factory": self.loop_factory})
        return backend

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any]
    ) -> Generator[None, object, object]:
        """Rewrite the value of every ``anyio_backend`` fixture with `anyio_backend()`."""
        value = yield
        if fixturedef.argname != "anyio_backend":
            return value
        rewritten = self.anyio_backend(value)
        cached = fixturedef.cached_result
        if rewritten is not value and cached is not None and cached[2] is None:
            # Later requests of the fixture read its cached value, not this return value.
            fixturedef.cached_result = (rewritten, cached[1], None)
        return rewritten


class PytestAsyncioLoops:
    """pytest-asyncio's ``pytest_asyncio_loop_factories`` hook, for ``--gorun``.

    Registered only where pytest-asyncio defines that hook (1.4 and later).

    Args:
        loop_factory: The factory every asyncio test's loop is made with.
    """

    def __init__(self, loop_factory: LoopFactory) -> None:
        self.loop_factory = loop_factory

    @pytest.hookimpl(wrapper=True)
    def pytest_asyncio_loop_factories(
        self,
    ) -> Generator[None, object, object]:
        """Map the suite's loop factories, or a single ``gorun`` one, to gorun's factory."""
        factories = yield
        if factories is None:
            return {FACTORY_NAME: self.loop_factory}
        if isinstance(factories, Mapping) and factories:
            return {name: self.loop_factory for name in factories}
        return factories  # invalid: left for pytest-asyncio to report


# Fixtures provided by the plugin go below. Fixtures are used only by tests that name
# them, so they are defined whether or not --gorun is given.


@pytest.fixture
def gorun_no_leaks(request: pytest.FixtureRequest) -> Generator[None, None, None]:
    """Fail the test if goroutines it started outlive it (see ``gorun.testing.no_leaks``).

    Goroutines still running when the test ends get a grace period (``--gorun-leak-grace``,
    default 0.5 s) to finish; any left then, or cancelled because their loop shut down
    while they ran, fail the test with their dump.
    """
    grace: float | None = request.config.getoption("gorun_leak_grace")
    with no_leaks(grace if grace is not None else DEFAULT_LEAK_GRACE):
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--gorun-no-leaks``, every test uses the ``gorun_no_leaks`` fixture."""
    if not config.getoption("gorun_no_leaks"):
        return
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is not None and "gorun_no_leaks" not in fixturenames:
            # First, so that it is set up before the test's event loop and torn down
            # after it: goroutines the loop cancelled at its end are then seen.
            fixturenames.insert(0, "gorun_no_leaks")
