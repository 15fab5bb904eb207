"""gorun: goroutines for asyncio, on N event loops pinned to N OS threads.

Start with [`run()`][gorun.run] (or ``asyncio.run(main(), loop_factory=gorun.new_event_loop)``) and
[`go()`][gorun.go]. See the guide for where goroutines run and what stays on its loop.
"""

from ._chan import Chan as Chan
from ._chan import Closed as Closed
from ._chan import WouldBlock as WouldBlock
from ._current import num_goroutine as num_goroutine
from ._current import procs as procs
from ._current import stats as stats
from ._deadlock import Deadlock as Deadlock
from ._dump import dump as dump
from ._every import Listeners as Listeners
from ._every import listen as listen
from ._every import on_every_worker as on_every_worker
from ._go import go as go
from ._goroutine import Goroutine as Goroutine
from ._group import Group as Group
from ._loop import GoPolicy as GoPolicy
from ._loop import Loop as Loop
from ._loop import install as install
from ._loop import new_event_loop as new_event_loop
from ._loop import run as run
from ._mutex import Mutex as Mutex
from ._mutex import RWMutex as RWMutex
from ._select import select as select
from ._serve import Server as Server
from ._serve import create_server as create_server
from ._serve import start_server as start_server
from ._stats import Stats as Stats
from ._stats import WorkerStats as WorkerStats
from ._sync import Once as Once
from ._sync import WaitGroup as WaitGroup
from ._time import Ticker as Ticker
from ._time import Timer as Timer
from ._time import after as after

__version__ = "0.1.0"

__all__ = [
    "Chan",
    "Closed",
    "Deadlock",
    "GoPolicy",
    "Goroutine",
    "Group",
    "Listeners",
    "Loop",
    "Mutex",
    "Once",
    "RWMutex",
    "Server",
    "Stats",
    "Ticker",
    "Timer",
    "WaitGroup",
    "WorkerStats",
    "WouldBlock",
    "after",
    "create_server",
    "dump",
    "go",
    "install",
    "listen",
    "new_event_loop",
    "num_goroutine",
    "on_every_worker",
    "procs",
    "run",
    "select",
    "start_server",
    "stats",
]


def _present_as_gorun() -> None:
    # Public objects say they live in `gorun`, where users import them from, not in the
    # private module that defines them: tracebacks read `gorun.Closed`, reprs read
    # `<class 'gorun.Chan'>`, and pickle finds them by that name.
    namespace = globals()
    for name in __all__:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith("gorun._"):
            obj.__module__ = "gorun"


_present_as_gorun()
