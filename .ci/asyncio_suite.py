"""CPython's own test_asyncio, on the stock loop and with gorun's loop as the default.

    python .ci/asyncio_suite.py            compare: fails if a test that passes on the
                                           stock loop fails with gorun's loop
    python .ci/asyncio_suite.py --run MODE [TEST...]
                                           one side (stock or gorun), printing a JSON
                                           list of the tests that failed

The interpreter's own copy of the suite (``test.test_asyncio``) runs twice, each side in
a fresh process. On the gorun side the default event-loop policy is gorun's (procs=2):
every loop that ``asyncio.new_event_loop()``, ``asyncio.run()`` and the suite's own
``IsolatedAsyncioTestCase`` create is a ``gorun.Loop``, also after a test resets the
policy. Loops that a test builds from a class by name (``asyncio.SelectorEventLoop()``)
stay asyncio's. A test that fails on both sides is the interpreter's business, not
gorun's; one that fails on gorun only is a regression, and each is rerun alone on both
sides, so that only a difference that repeats counts.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import json
import subprocess
import sys
import unittest

PROCS = 2
RERUNS = 2


def _make_gorun_the_default() -> None:
    import gorun

    class Policy(gorun.GoPolicy):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(procs=PROCS)

    def init_policy() -> None:
        # What asyncio calls when no policy is set (also after set_event_loop_policy(None)).
        with asyncio.events._lock:  # type: ignore[attr-defined]
            if asyncio.events._event_loop_policy is None:  # type: ignore[attr-defined]
                asyncio.events._event_loop_policy = Policy()  # type: ignore[attr-defined]

    asyncio.events._init_event_loop_policy = init_policy  # type: ignore[attr-defined]
    asyncio.events._event_loop_policy = None  # type: ignore[attr-defined]


def _run(mode: str, names: list[str]) -> None:
    suite = unittest.defaultTestLoader.loadTestsFromNames(names or ["test.test_asyncio"])
    with open("/dev/null", "w") as sink:
        result = unittest.TextTestRunner(stream=sink, verbosity=0).run(suite)
    failed = sorted({test.id() for test, _ in result.failures + result.errors})
    print(json.dumps({"mode": mode, "ran": result.testsRun, "failed": failed}))


def _side(mode: str, names: list[str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--run", mode, *names],
        capture_output=True, text=True, timeout=1800,
    )
    for line in reversed(out.stdout.splitlines()):  # the suite's child processes print too
        if line.startswith("{") and f'"mode": "{mode}"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    sys.exit(f"the {mode} side printed no result (exit {out.returncode}):\n{out.stderr[-4000:]}")


def _compare() -> int:
    print(f"interpreter: {sys.version.split()[0]} ({sys.executable})")
    stock, ours = _side("stock", []), _side("gorun", [])
    print(f"stock loop: {stock['ran']} tests, {len(stock['failed'])} failed")  # type: ignore[arg-type]
    print(f"gorun loop: {ours['ran']} tests, {len(ours['failed'])} failed")  # type: ignore[arg-type]
    suspects = sorted(set(ours["failed"]) - set(stock["failed"]))  # type: ignore[call-overload]
    regressions = []
    for name in suspects:
        # Alone, a few times on each side: a test that fails only under load is not one.
        outcomes = [
            (bool(_side("stock", [name])["failed"]), bool(_side("gorun", [name])["failed"]))
            for _ in range(RERUNS)
        ]
        if all(not s and g for s, g in outcomes):
            regressions.append(name)
        else:
            print(f"  differed once, not when rerun alone: {name} {outcomes}")
    for name in regressions:
        print(f"  REGRESSION (passes on the stock loop, fails on gorun's): {name}")
    print("no regressions" if not regressions else f"{len(regressions)} regression(s)")
    return 1 if regressions else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--run":
        if sys.argv[2] == "gorun":
            _make_gorun_the_default()
        _run(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(_compare())
