"""Goroutines that outlived what started them, for ``gorun.testing.no_leaks()``.

While at least one ``no_leaks()`` block is open, this module registers `record_outliving`
with the runtime's outlive hooks: a runtime whose main coroutine returned, or that began
to shut down, reports its live goroutines here, with their dump as it was then. A
goroutine that then finishes on its own is not a leak; one that is cancelled (as
shutdown cancels what is left) or still runs at the check is. With no block open,
nothing is registered and nothing is recorded.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ._dump import goroutine_entry, live_goroutines
from ._goroutine import Goroutine
from ._runtime import Runtime, outlive_hooks

_leak_lock = threading.Lock()
_open_checks = 0  # no_leaks() blocks open now; guarded by _leak_lock
#: Goroutine id -> (the goroutine, its dump) for goroutines still running when the main
#: coroutine of their runtime returned, or when the runtime shut down.
_outlived: dict[int, tuple[Goroutine[Any], list[str]]] = {}


def count_open_checks(delta: int) -> None:
    """Count a no_leaks() block in (+1) or out (-1); record outliving goroutines while any
    is open."""
    global _open_checks
    with _leak_lock:
        was = _open_checks
        _open_checks += delta
        if was == 0 and _open_checks > 0:
            outlive_hooks.append(record_outliving)
        elif was > 0 and _open_checks == 0:
            outlive_hooks.remove(record_outliving)
            _outlived.clear()


def record_outliving(rt: Runtime) -> None:
    """*rt*'s main coroutine returned, or *rt* shuts down: remember what still runs."""
    now = time.monotonic()
    entries = [(g, goroutine_entry(g, now)) for g in live_goroutines(rt)]
    with _leak_lock:
        if _open_checks:
            for g, entry in entries:
                if entry and g.id not in _outlived:
                    _outlived[g.id] = (g, entry)


def outlived(first_id: int, exclude: set[int]) -> list[list[str]]:
    """Dumps of recorded goroutines with an id above *first_id* that did not finish."""
    with _leak_lock:
        found = list(_outlived.values())
    return [
        entry
        for g, entry in found
        if g.id > first_id and g.id not in exclude and (not g.done() or g.cancelled())
    ]
