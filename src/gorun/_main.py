"""``python -m gorun app.py``: run an unmodified asyncio program on gorun."""

from __future__ import annotations

import asyncio
import asyncio.events
import os
import runpy
import sys
import warnings
from collections.abc import Callable, Sequence

from ._compat import POLICY_BASE
from ._config import resolve_loop, resolve_procs
from ._loop import GoPolicy, Loop

USAGE = """\
usage: python -m gorun [--procs N] [--loop {asyncio,uvloop}] (app.py | -m module) [args...]

Runs an asyncio program on gorun: every event loop it creates with asyncio.run(),
asyncio.Runner() or asyncio.new_event_loop() is a gorun loop with N workers.

options:
  --procs N     worker loops per gorun loop (default: $GORUN_PROCS, else the CPU count)
  --loop KIND   the kind of every loop, the app's own included: asyncio (default)
                or uvloop (default: $GORUN_LOOP)
  -m module     run a library module as a script, as python -m does
  -h, --help    show this message
"""


def hook_mode() -> str:
    """How new loops are redirected: through a policy, or by replacing the factory.

    Policies are deprecated from Python 3.14 and planned for removal in 3.16, so there
    gorun replaces ``asyncio.new_event_loop`` (which ``asyncio.run`` and
    ``asyncio.Runner`` call when given no ``loop_factory``) instead.
    """
    forced = os.environ.get("GORUN_HOOK", "")
    if forced in ("policy", "factory"):
        return forced
    if sys.version_info < (3, 14) and POLICY_BASE is not object:
        return "policy"
    return "factory"


def install_hook(procs: int | None, loop: str | None, mode: str | None = None) -> None:
    """Make every loop asyncio creates from now on a gorun [`Loop`][gorun.Loop]."""
    mode = mode or hook_mode()
    if mode == "policy":
        policy = GoPolicy(procs)
        if loop is not None:
            policy.new_event_loop = lambda: Loop(procs, loop=loop)  # type: ignore[method-assign]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(policy)
        return

    def factory() -> asyncio.AbstractEventLoop:
        return Loop(procs, loop=loop)

    asyncio.events.new_event_loop = factory
    asyncio.new_event_loop = factory


def main(argv: Sequence[str] | None = None, *, exit: Callable[[int], object] = sys.exit) -> None:
    """Entry point of ``python -m gorun``."""
    args = list(sys.argv[1:] if argv is None else argv)
    procs: int | None = None
    loop: str | None = None
    module: str | None = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-h", "--help"):
            print(USAGE, end="")
            exit(0)
            return
        if opt in ("--procs", "--loop", "-m") and not args:
            print(f"gorun: {opt} needs a value\n\n{USAGE}", end="", file=sys.stderr)
            exit(2)
            return
        try:
            if opt == "--procs":
                value = args.pop(0)
                try:
                    number = int(value)
                except ValueError:
                    raise ValueError(f"--procs must be a positive integer, got {value!r}") from None
                procs = resolve_procs(number)
            elif opt == "--loop":
                loop = resolve_loop(args.pop(0))
            elif opt == "-m":
                module = args.pop(0)
                break
            else:
                raise ValueError(f"unknown option {opt!r}")
        except (TypeError, ValueError, RuntimeError) as exc:
            print(f"gorun: {exc}\n\n{USAGE}", end="", file=sys.stderr)
            exit(2)
            return
    if module is None and not args:
        print(f"gorun: no program to run\n\n{USAGE}", end="", file=sys.stderr)
        exit(2)
        return
    try:
        resolve_procs(procs)
        resolve_loop(loop)
    except (TypeError, ValueError, RuntimeError) as exc:
        print(f"gorun: {exc}", file=sys.stderr)
        exit(2)
        return
    install_hook(procs, loop)
    if module is not None:
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    path = args[0]
    if not os.path.exists(path):
        print(f"gorun: can't open file {path!r}: no such file", file=sys.stderr)
        exit(2)
        return
    sys.argv = list(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")
