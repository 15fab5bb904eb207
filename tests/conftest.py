"""Fixtures the test modules share (the plain helpers they call are in ``support.py``).

* ``seed``: a test's random seed, replayable: ``GORUN_TEST_SEED`` (``GORUN_STRESS_SEED``
  for the stress tests) if set, else one drawn for the whole run; printed at the end of
  the report and with each test's output.
* ``_only_when_asked`` (automatic): the stress tests run only when asked for, with
  ``pytest -m stress`` (or ``GORUN_STRESS=1``).
* ``no_never_awaited``: fails a test that left a coroutine never awaited; modules opt
  in with ``pytest.mark.usefixtures("no_never_awaited")``.
* ``high_fds``: the descriptors a test opens next are numbered 1024 or more, beyond
  ``select.select``'s range, as in a process with many connections open.
"""

from __future__ import annotations

import gc
import os
import resource
import warnings
from collections.abc import Iterator

import pytest

from tests.support import STRESS_SEED_ENV, TEST_SEED_ENV, draw_seed, session_seed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The run's seeds, at the end of every run's report (``-q`` too), to replay it."""
    test, stress = session_seed(TEST_SEED_ENV), session_seed(STRESS_SEED_ENV)
    terminalreporter.write_line(f"gorun seeds: {TEST_SEED_ENV}={test} {STRESS_SEED_ENV}={stress}")


def _is_stress(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("stress") is not None


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    """Skip a test marked ``stress`` unless the run asks for them."""
    if not _is_stress(request):
        return
    markexpr = request.config.getoption("markexpr", "") or ""
    if "stress" not in markexpr and not os.environ.get("GORUN_STRESS"):
        pytest.skip("a stress test: run with -m stress (or GORUN_STRESS=1)")


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A random seed for the test, from :func:`tests.support.draw_seed` (printed, with the
    setting that replays it).

    A stress test takes ``GORUN_STRESS_SEED`` and seeds select's choices among ready
    cases with it too; any other test takes ``GORUN_TEST_SEED``.
    """
    if not _is_stress(request):
        return draw_seed(TEST_SEED_ENV)
    value = draw_seed(STRESS_SEED_ENV)
    import gorun._select  # here, not at the top: only the stress tests need it

    gorun._select._random.seed(value)  # select's choices among ready cases, too
    return value


@pytest.fixture
def no_never_awaited() -> Iterator[None]:
    """Fail the test if a coroutine was garbage-collected without being awaited."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], caught


@pytest.fixture
def high_fds() -> Iterator[None]:
    # Fill the descriptor table up to 1024 (raising the soft limit if it is lower and
    # the hard one allows), so that what the test opens next gets a number past it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the descriptor limit ({hard}) is too low to open 1024")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    # Earlier tests' garbage closes its descriptors when collected, which would leave
    # holes below 1024: collect it first, and no more until the test is over.
    gc.collect()
    gc.disable()
    held: list[int] = []
    try:
        while not held or held[-1] < 1024:
            held.append(os.dup(held[0]) if held else os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        gc.enable()
        for fd in held:
            os.close(fd)
        if soft != resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
