"""A deadlock that gorun reports, then the same program fixed.

Three goroutines each send a square on an unbuffered channel; ``main`` adds them up.
``broken`` waits on the ``WaitGroup`` before it receives: the senders wait for a
receiver, the receiver waits for the senders, and nothing else can wake any of them.
Go stops such a program with "all goroutines are asleep - deadlock!"; gorun cancels
``main`` and ``gorun.run`` raises :class:`gorun.Deadlock`, whose message lists every
goroutine, what it waits for and where (this example prints one line of it per
goroutine). ``fixed`` receives while the senders send, and a goroutine closes the
channel once they are all done.

Run it from the repository root::

    python examples/deadlock.py

Which worker ran which goroutine, and the times in the dump, vary from run to run.
"""

from __future__ import annotations

import gorun


async def square(n: int, results: gorun.Chan[int]) -> None:
    await results.send(n * n)


async def broken() -> int:
    results: gorun.Chan[int] = gorun.Chan()
    wg = gorun.WaitGroup()
    for n in range(3):
        wg.go(square(n, results), name=f"square-{n}")
    await wg.wait()  # the senders wait for a receiver, and the receiver is here
    results.close()
    return sum([value async for value in results])


async def close_when_done(wg: gorun.WaitGroup, results: gorun.Chan[int]) -> None:
    await wg.wait()
    results.close()  # every sender is done: this ends the receive loop below


async def fixed() -> int:
    results: gorun.Chan[int] = gorun.Chan()
    wg = gorun.WaitGroup()
    for n in range(3):
        wg.go(square(n, results), name=f"square-{n}")
    gorun.go(close_when_done(wg, results))
    return sum([value async for value in results])  # receives while they send


def main() -> None:
    try:
        # deadlock=True is the default; given here so that GORUN_DEADLOCK=0 cannot make
        # this example hang.
        gorun.run(broken(), deadlock=True)
    except gorun.Deadlock as exc:
        first, *rest = str(exc).splitlines()
        print("broken:", first)
        for line in rest:  # the dump: one heading per goroutine (or task), then details
            if line.startswith(("goroutine ", "task ")):
                print("   ", line)
    print("fixed:", gorun.run(fixed()))


if __name__ == "__main__":
    main()
