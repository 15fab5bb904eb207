"""Runtime settings and their environment defaults (GORUN_PROCS, GORUN_LOOP, GORUN_DEADLOCK),
and the argument checks the public API shares."""

from __future__ import annotations

import math
import os

LOOP_KINDS = ("asyncio", "uvloop")


def check_procs(procs: object, *, source: str = "procs") -> int:
    """Return *procs* as a worker count, or raise a clear TypeError / ValueError."""
    if isinstance(procs, bool) or not isinstance(procs, int):
        raise TypeError(
            f"{source} must be a positive int (the number of worker loops), "
            f"got {type(procs).__name__} {procs!r}"
        )
    if procs < 1:
        raise ValueError(
            f"{source} must be at least 1 (the number of worker loops), got {procs}"
        )
    return procs


def permit_enabled() -> bool:
    """Whether workers take turns by loop iteration on a GIL build (``_permit``).

    ``GORUN_GIL_PERMIT=0`` turns it off (the workers then trade the GIL at every system
    call, as plain threads do); ``1`` or unset: on.
    """
    raw = os.environ.get("GORUN_GIL_PERMIT", "").strip()
    if raw not in ("", "0", "1"):
        raise ValueError(f"GORUN_GIL_PERMIT must be 0 or 1, got {raw!r}")
    return raw != "0"


def default_procs() -> int:
    """The worker count used when none is given: ``GORUN_PROCS``, else ``os.cpu_count()``."""
    raw = os.environ.get("GORUN_PROCS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(
                f"GORUN_PROCS must be a positive integer, got {raw!r}; "
                "unset it to use one worker per CPU"
            ) from None
        return check_procs(value, source="GORUN_PROCS")
    return os.cpu_count() or 1


def resolve_procs(procs: int | None) -> int:
    """*procs* if given (validated), else the default."""
    return default_procs() if procs is None else check_procs(procs)


def resolve_loop(loop: str | None) -> str:
    """Validate a worker loop kind; ``None`` means ``GORUN_LOOP``, else ``"asyncio"``."""
    source = "loop"
    if loop is None:
        loop = os.environ.get("GORUN_LOOP", "").strip() or "asyncio"
        source = "GORUN_LOOP"
    if not isinstance(loop, str):
        raise TypeError(f"loop must be 'asyncio' or 'uvloop', got {type(loop).__name__}")
    if loop not in LOOP_KINDS:
        raise ValueError(f"unknown {source} {loop!r}: expected 'asyncio' or 'uvloop'")
    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise RuntimeError(
                f"{source}='uvloop' needs uvloop, which is not installed: "
                "pip install 'gorun[uvloop]'"
            ) from None
    return loop


def resolve_deadlock(deadlock: bool | None) -> bool:
    """Whether to detect deadlocks; ``None`` means ``GORUN_DEADLOCK`` (default on)."""
    if deadlock is not None:
        if not isinstance(deadlock, bool):
            raise TypeError(f"deadlock must be True, False or None, got {deadlock!r}")
        return deadlock
    raw = os.environ.get("GORUN_DEADLOCK", "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"GORUN_DEADLOCK must be 1 or 0 (on or off), got {raw!r}")


def check_int(what: str, value: object) -> int:
    """*value*, if it is an int (not a bool); else a TypeError that names *what*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    return value


def check_seconds(value: object, what: str, *, positive: bool = False) -> float:
    """*value* as a number of seconds: finite, and 0 or more (more than 0 if *positive*).

    Raises:
        TypeError: *value* is not an int or float.
        ValueError: it is not finite, or negative (or 0 where *positive*).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be a number of seconds (int or float), "
            f"got {type(value).__name__} {value!r}"
        )
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    if positive and seconds <= 0:
        raise ValueError(f"{what} must be more than 0 seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"{what} must be 0 or more seconds, got {value!r}")
    return seconds
