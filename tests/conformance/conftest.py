"""Backends for the conformance cases, and the ``runner`` fixture that parametrizes them.

A *case* is a zero-argument coroutine function. ``runner.run(case)`` runs it to the end on
one backend and returns its result (or raises its exception):

* ``asyncio``: plain ``asyncio.run(case())``.
* ``gorun-1``: ``gorun.run(body(), procs=1)``, where *body* awaits ``gorun.go(case())``:
  the case runs in a goroutine on the home loop (the only worker).
* ``gorun-4``: ``gorun.run(body(), procs=4)``; the case runs in a goroutine on one of the
  three worker threads, never on the main thread (checked on every run).
* ``gorun-uvloop-2``: as ``gorun-4`` with ``procs=2, loop="uvloop"``: every loop, the
  home loop included, is a uvloop loop (skipped where uvloop is not installed).

Inside a case, ``runner.spawn(coro, name=...)`` starts a child the backend's way: an
asyncio Task with ``create_task`` on stock asyncio, a goroutine with ``gorun.go`` on
gorun. Either way the result is awaitable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import gorun

T = TypeVar("T")

#: Name of the goroutine that runs the case on the gorun backends.
CASE_NAME = "conformance-case"
#: Upper bound on how long the home loop waits for a worker to pick up the case (gorun-4).
PICKUP_TIMEOUT = 10.0


async def _nothing() -> None:
    return None


class Backend:
    """One way of running a conformance case; see the module docstring."""

    def __init__(self, name: str, procs: int | None, loop: str = "asyncio") -> None:
        self.name = name
        #: gorun worker count; None for stock asyncio.
        self.procs = procs
        #: gorun's loop kind.
        self.loop = loop

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"

    @property
    def is_gorun(self) -> bool:
        return self.procs is not None

    @property
    def case_on_main_thread(self) -> bool:
        """Whether the case runs on the main thread (the thread that called run)."""
        return self.procs is None or self.procs == 1

    def run(self, case: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``case()`` to the end on this backend; return its result or raise."""
        if self.procs is None:
            return asyncio.run(case())
        return gorun.run(self._body(case, self.procs), procs=self.procs, loop=self.loop)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> Awaitable[T]:
        """Start *coro* beside the caller: ``create_task`` on asyncio, ``go`` on gorun."""
        if self.procs is None:
            return asyncio.create_task(coro, name=name)
        return gorun.go(coro, name=name)

    @staticmethod
    async def _body(case: Callable[[], Coroutine[Any, Any, T]], procs: int) -> T:
        on_main: list[bool] = []
        picked_up = threading.Event()

        async def wrapped() -> T:
            on_main.append(threading.current_thread() is threading.main_thread())
            picked_up.set()
            return await case()

        g = gorun.go(wrapped(), name=CASE_NAME)
        if procs > 1:
            # Move the case off the home loop (the main thread): queue a second goroutine
            # behind it, which pushes the case from the home worker's ``runnext`` slot to
            # its run queue and wakes an idle worker, then hold the home loop until a
            # worker has started the case. Only another worker can start it meanwhile.
            filler = gorun.go(_nothing())
            if not picked_up.wait(PICKUP_TIMEOUT):
                raise AssertionError(
                    f"no gorun worker started the case within {PICKUP_TIMEOUT}s while "
                    "the home loop was blocked"
                )
            await filler
            if on_main != [False]:
                raise AssertionError(f"the case was expected on a worker thread: {on_main}")
        return await g


BACKENDS = [
    Backend("asyncio", None),
    Backend("gorun-1", 1),
    Backend("gorun-4", 4),
    Backend("gorun-uvloop-2", 2, loop="uvloop"),
]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def runner(request: pytest.FixtureRequest) -> Backend:
    """The backend to run a conformance case on (see the module docstring)."""
    backend: Backend = request.param
    if backend.loop == "uvloop":
        pytest.importorskip("uvloop")
    return backend


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("gorun-")}


@pytest.fixture(autouse=True)
def _no_leaked_worker_threads() -> Iterator[None]:
    """Every gorun runtime a test starts is shut down, its threads joined, by its end."""
    before = _worker_threads()
    yield
    leaked = _worker_threads() - before
    assert not leaked, f"gorun threads left running: {sorted(t.name for t in leaked)}"
