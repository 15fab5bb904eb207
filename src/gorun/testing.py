"""Test helpers: `no_leaks()` fails a test that leaves goroutines behind (Go's goleak).

The pytest plugin offers the same per test: the ``gorun_no_leaks`` fixture, and
``--gorun-no-leaks`` to apply it to every test.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from ._dump import goroutine_entry, live_goroutines
from ._leaks import count_open_checks, outlived
from ._runtime import Runtime, all_runtimes

__all__ = ["DEFAULT_GRACE", "no_leaks"]

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds a goroutine started inside ``no_leaks()`` gets to finish after the block ends.
DEFAULT_GRACE = 0.5
_POLL = 0.005


class no_leaks:
    """Fail if goroutines started inside the block are still alive at its end.

    Use it as ``with no_leaks():``, ``async with no_leaks():`` or as a decorator of a
    function or coroutine function. At the end of the block, goroutines started inside
    it get *grace* seconds to finish; any still running then (or cancelled because their
    runtime shut down while they ran, as ``gorun.run()`` does when ``main`` returns)
    is a leak, and the block raises AssertionError listing each one as
    [`gorun.dump()`][gorun.dump] shows it: where it is blocked, for how long, and its await stack.

    Goroutines that were running before the block are not counted. An exception raised
    by the block itself passes through unchanged (leaks are not checked then).

    Args:
        grace: Seconds to wait for goroutines to finish. The async form waits with
            ``asyncio.sleep``, so goroutines on the caller's own loop can finish; the
            plain form blocks the thread.
    """

    def __init__(self, grace: float = DEFAULT_GRACE) -> None:
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
            raise ValueError(f"no_leaks() grace must be a number of seconds >= 0, got {grace!r}")
        self.grace = float(grace)
        self._first_id: int | None = None

    # -- the check ---------------------------------------------------------------------------

    def _start(self) -> None:
        if self._first_id is not None:
            raise RuntimeError("no_leaks() is not reentrant: use a new one for each block")
        count_open_checks(+1)
        self._first_id = Runtime.next_id()  # goroutines started from now on have larger ids

    def _leaked(self) -> list[Any]:
        first = self._first_id
        assert first is not None
        live = (g for rt in all_runtimes() for g in live_goroutines(rt))
        return [g for g in live if g.id > first and not g.done()]

    def _finish(self, leaked: list[Any]) -> None:
        first = self._first_id
        assert first is not None
        self._first_id = None
        try:
            now = time.monotonic()
            entries = [line for g in leaked for line in goroutine_entry(g, now)]
            at_shutdown = outlived(first, {g.id for g in leaked})
        finally:
            count_open_checks(-1)
        count = len(leaked) + len(at_shutdown)
        if not count:
            return
        lines = [f"{count} goroutine(s) started inside no_leaks() outlived it"]
        if leaked:
            lines.append(f"\nstill running {self.grace:g} s after the block ended:")
            lines.extend(entries)
        if at_shutdown:
            lines.append(
                "\nstill running when their main coroutine returned (and cancelled since):"
            )
            for entry in at_shutdown:
                lines.extend(entry)
        raise AssertionError("\n".join(lines))

    # -- with -----------------------------------------------------------------------------

    def __enter__(self) -> no_leaks:
        self._start()
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if et is not None:
            self._abandon()
            return
        deadline = time.monotonic() + self.grace
        leaked = self._leaked()
        while leaked and time.monotonic() < deadline:
            time.sleep(_POLL)
            leaked = self._leaked()
        self._finish(leaked)

    # -- async with -------------------------------------------------------------------------

    async def __aenter__(self) -> no_leaks:
        self._start()
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if et is not None:
            self._abandon()
            return
        deadline = time.monotonic() + self.grace
        leaked = self._leaked()
        while leaked and time.monotonic() < deadline:
            await asyncio.sleep(_POLL)
            leaked = self._leaked()
        self._finish(leaked)

    def _abandon(self) -> None:
        if self._first_id is not None:
            self._first_id = None
            count_open_checks(-1)

    # -- decorator --------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        grace = self.grace
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with no_leaks(grace):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with no_leaks(grace):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
