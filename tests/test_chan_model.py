"""Channels and select against a sequential model, on one loop (hypothesis).

Each step runs a few actions back to back, without yielding: non-blocking operations
(``send_nowait``, ``recv_nowait``, ``close``, ``select(..., default=True)``), starting a
blocking operation as a task (``send``, ``recv``, ``recv_ok``, ``select``) and cancelling
one. Then the loop runs until every task is parked or done, and every outcome (values,
WouldBlock, Closed, cancelled, still parked), every ``len`` and ``closed`` must match
the model's.

The model is Go's channel: a buffer of ``cap`` values, FIFO queues of parked receivers
and senders, and a closed flag; plus gorun's rule for a cancel that races a hand-off.
Its events run in the loop's order: a task started, or woken (by a hand-off or a
cancel), runs in the order those happened once the step yields. So a cancel and a
hand-off in one step race as they do on a real loop: the hand-off claims the operation
first, then its task sees the cancellation. A receive is then undone (the value goes
back to the next receiver or the head of the buffer) and raises CancelledError; a send
stays done and returns (the cancel comes at the task's next await). Where several
select cases are ready, the real choice is random; the model checks that the case
taken was ready and had that outcome, then takes it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections import deque
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import gorun
import gorun._select

pytestmark = pytest.mark.timeout(120)

NCHANS = 2
KINDS = ("recv", "recv_ok", "send")
Case = tuple[int, str, int]  # channel, kind, value (for a send)
Outcome = tuple[Any, ...]

# -- the model ---------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Op:
    """A blocking operation: a plain send/recv/recv_ok (one case) or a select."""

    k: int
    kind: str  # "send", "recv", "recv_ok" or "select"
    cases: list[Case]
    started: bool = False
    done: bool = False  # decided: claimed by a counterparty, or gave up
    finished: bool = False  # its task ran after that: a cancel comes too late
    woken: bool = False  # its task's wake-up is queued
    cancel_pending: bool = False
    won: tuple[int, Outcome] | None = None  # the case that ran, and what it did
    expected: Outcome | None = None


def _format(op_kind: str, i: int, kind: str, what: Outcome) -> Outcome:
    """What the operation returns (("ok", result)) or raises (("closed",))."""
    if kind == "send":
        if what[0] == "send closed":
            return ("closed",)
        result: Any = None
    else:
        _, value, ok = what
        if kind == "recv":
            if not ok:
                return ("closed",)
            result = value
        else:
            result = (value, ok)
    return ("ok", (i, result) if op_kind == "select" else result)


@dataclasses.dataclass
class MChan:
    cap: int
    buf: deque[int] = dataclasses.field(default_factory=deque)
    closed: bool = False
    recvq: deque[tuple[Op, int]] = dataclasses.field(default_factory=deque)
    sendq: deque[tuple[Op, int]] = dataclasses.field(default_factory=deque)


def _pop_live(q: deque[tuple[Op, int]]) -> tuple[Op, int] | None:
    while q:
        op, i = q.popleft()
        if not op.done:
            return op, i
    return None


def _has_live(q: deque[tuple[Op, int]]) -> bool:
    return any(not op.done for op, _ in q)


class Model:
    def __init__(self, caps: list[int]) -> None:
        self.chans = [MChan(cap) for cap in caps]
        self.ops: list[Op] = []
        self.events: deque[tuple[str, Op]] = deque()

    def complete(self, op: Op, i: int, what: Outcome) -> None:
        """A counterparty claimed *op*'s case *i*: *what* is ("sent",), ("send closed",)
        or ("recv", value, ok). Its task wakes up later."""
        assert not op.done
        op.done = True
        op.won = (i, what)
        op.expected = _format(op.kind, i, op.cases[i][1], what)
        self.wake_later(op)

    def wake_later(self, op: Op) -> None:
        if not op.woken:
            op.woken = True
            self.events.append(("wake", op))

    def put_back(self, c: int, value: int) -> None:
        """A cancelled receive returns its value: to the next receiver, or the buffer's
        head."""
        ch = self.chans[c]
        w = _pop_live(ch.recvq)
        if w is not None:
            self.complete(w[0], w[1], ("recv", value, True))
        else:
            ch.buf.appendleft(value)

    # The channel operations, as in Go.

    def try_send(self, c: int, value: int) -> str:
        ch = self.chans[c]
        if ch.closed:
            return "closed"
        w = _pop_live(ch.recvq)
        if w is not None:
            self.complete(w[0], w[1], ("recv", value, True))
            return "sent"
        if len(ch.buf) < ch.cap:
            ch.buf.append(value)
            return "sent"
        return "block"

    def try_recv(self, c: int) -> Outcome | None:
        ch = self.chans[c]
        if ch.buf:
            value = ch.buf.popleft()
            # A parked sender's value takes the freed slot, if that makes room: not in
            # a buffer overfull with a value put back, nor in an unbuffered channel.
            if len(ch.buf) < ch.cap and (w := _pop_live(ch.sendq)) is not None:
                op, i = w
                ch.buf.append(op.cases[i][2])
                self.complete(op, i, ("sent",))
            return ("recv", value, True)
        w = _pop_live(ch.sendq)
        if w is not None:
            op, i = w
            self.complete(op, i, ("sent",))
            return ("recv", op.cases[i][2], True)
        if ch.closed:
            return ("recv", None, False)
        return None

    def close(self, c: int) -> str | None:
        ch = self.chans[c]
        if ch.closed:
            return "Closed"
        ch.closed = True
        while (w := _pop_live(ch.recvq)) is not None:
            self.complete(w[0], w[1], ("recv", None, False))
        while (w := _pop_live(ch.sendq)) is not None:
            self.complete(w[0], w[1], ("send closed",))
        return None

    def ready(self, case: Case) -> bool:
        c, kind, _ = case
        ch = self.chans[c]
        if kind == "send":
            return ch.closed or _has_live(ch.recvq) or len(ch.buf) < ch.cap
        return bool(ch.buf) or ch.closed or _has_live(ch.sendq)

    def predict(self, op_kind: str, i: int, case: Case) -> Outcome:
        """What running ready *case* would return, without running it."""
        c, kind, _ = case
        ch = self.chans[c]
        if kind == "send":
            return _format(op_kind, i, kind, ("send closed",) if ch.closed else ("sent",))
        if ch.buf:
            return _format(op_kind, i, kind, ("recv", ch.buf[0], True))
        for op, j in ch.sendq:
            if not op.done:
                return _format(op_kind, i, kind, ("recv", op.cases[j][2], True))
        return _format(op_kind, i, kind, ("recv", None, False))

    def run_case(self, op_kind: str, i: int, case: Case) -> Outcome:
        """Run ready *case*; return what the operation returns."""
        c, kind, value = case
        if kind == "send":
            sent = self.try_send(c, value)
            assert sent != "block"
            return _format(op_kind, i, kind, ("sent",) if sent == "sent" else ("send closed",))
        got = self.try_recv(c)
        assert got is not None
        return _format(op_kind, i, kind, got)

    def choose(self, op_kind: str, cases: list[Case], real: Outcome) -> Outcome | None:
        """Run the ready case the real select took (seen in *real*); None if none ready."""
        ready = [i for i, case in enumerate(cases) if self.ready(case)]
        if not ready:
            return None
        fits = [i for i in ready if self.predict(op_kind, i, cases[i]) == real]
        assert fits, f"real select gave {real}; ready cases {[cases[i] for i in ready]}"
        return self.run_case(op_kind, fits[0], cases[fits[0]])

    # Events, run once a step yields.

    def cancel(self, op: Op) -> None:
        if op.finished or op.cancel_pending:
            return  # too late, or cancelled already
        op.cancel_pending = True
        if op.started:
            self.wake_later(op)  # (unless a counterparty's hand-off queued it already)

    def start(self, op: Op, real: Outcome) -> None:
        if op.cancel_pending:  # cancelled before it ran
            op.done = op.finished = True
            op.expected = ("cancelled",)
            return
        op.started = True
        got: Outcome | None
        if op.kind == "select":
            got = self.choose("select", op.cases, real)
        elif self.ready(op.cases[0]):
            got = self.run_case(op.kind, 0, op.cases[0])
        else:
            got = None
        if got is not None:
            op.done = op.finished = True
            op.expected = got
            return
        for i, (c, kind, _) in enumerate(op.cases):
            ch = self.chans[c]
            (ch.sendq if kind == "send" else ch.recvq).append((op, i))

    def wake(self, op: Op) -> None:
        """The task of a parked *op* runs again: it was claimed, or cancelled, or both."""
        op.finished = True
        if not op.cancel_pending:
            return
        if not op.done:  # nobody claimed it first: it gives up
            op.done = True
            op.expected = ("cancelled",)
            return
        # Claimed, and then the cancel reached the task before it resumed: a receive is
        # undone (its value goes back) and raises; a send stays done.
        assert op.won is not None
        i, what = op.won
        c, kind, _ = op.cases[i]
        if kind != "send":
            op.expected = ("cancelled",)
            if what[2]:
                self.put_back(c, what[1])


# -- actions -------------------------------------------------------------------------------------

chan_index = st.integers(0, NCHANS - 1)
case_spec = st.tuples(chan_index, st.sampled_from(KINDS))
action = st.one_of(
    st.tuples(st.just("send_nowait"), chan_index),
    st.tuples(st.just("recv_nowait"), chan_index),
    st.tuples(st.just("close"), chan_index),
    st.tuples(st.just("select_default"), st.lists(case_spec, max_size=3)),
    st.tuples(st.sampled_from(("send", "recv", "recv_ok")), chan_index),
    st.tuples(st.just("select"), st.lists(case_spec, min_size=1, max_size=3)),
    st.tuples(st.just("cancel"), st.integers(0, 1000)),
)
step = st.lists(action, min_size=1, max_size=3)
caps = st.lists(st.integers(0, 3), min_size=NCHANS, max_size=NCHANS)
seeds = st.integers(0, 2**32 - 1)  # for select's random choices

QUIESCE = 20  # loop iterations after a step; a step's chains of wake-ups are shorter


class Harness:
    """Real channels and tasks on the running loop, checked against a Model."""

    def __init__(self, caps: list[int]) -> None:
        self.model = Model(caps)
        self.chans = [gorun.Chan[int](cap) for cap in caps]
        self.tasks: list[asyncio.Task[None]] = []
        self.records: dict[int, Outcome] = {}
        self.next_value = 0

    def value(self) -> int:
        self.next_value += 1
        return self.next_value

    def cases(self, spec: list[tuple[int, str]]) -> list[Case]:
        return [(c, kind, self.value() if kind == "send" else 0) for c, kind in spec]

    def real_cases(self, cases: list[Case]) -> list[Any]:
        out: list[Any] = []
        for c, kind, value in cases:
            ch = self.chans[c]
            out.append((ch.send, value) if kind == "send" else getattr(ch, kind))
        return out

    async def _run(self, k: int, op: Op) -> None:
        # Record the outcome as soon as the operation returns: a cancel that came too
        # late to undo a send is raised only after this.
        try:
            if op.kind == "select":
                result: Any = await gorun.select(*self.real_cases(op.cases))
            else:
                c, kind, value = op.cases[0]
                ch = self.chans[c]
                if kind == "send":
                    await ch.send(value)
                    result = None
                elif kind == "recv":
                    result = await ch.recv()
                else:
                    result = await ch.recv_ok()
            self.records[k] = ("ok", result)
        except gorun.Closed:
            self.records[k] = ("closed",)
        except asyncio.CancelledError:
            self.records[k] = ("cancelled",)
            raise

    def real_outcome(self, k: int) -> Outcome:
        if k in self.records:
            return self.records[k]
        task = self.tasks[k]
        if task.cancelled():  # cancelled before it started
            return ("cancelled",)
        assert not task.done(), task
        return ("parked",)

    async def step(self, actions: list[tuple[Any, ...]]) -> None:
        m = self.model
        for act in actions:
            name = act[0]
            if name == "send_nowait":
                c, v = act[1], self.value()
                expect = {"sent": None, "block": "WouldBlock", "closed": "Closed"}
                assert sync(self.chans[c].send_nowait, v) == expect[m.try_send(c, v)], act
            elif name == "recv_nowait":
                got = m.try_recv(act[1])
                want = "WouldBlock" if got is None else got[1] if got[2] else "Closed"
                assert sync(self.chans[act[1]].recv_nowait) == want, act
            elif name == "close":
                assert sync(self.chans[act[1]].close) == m.close(act[1]), act
            elif name == "select_default":
                cases = self.cases(act[1])
                try:
                    real: Outcome = (
                        "ok",
                        await gorun.select(*self.real_cases(cases), default=True),
                    )
                except gorun.Closed:
                    real = ("closed",)
                want_sel = m.choose("select", cases, real) or ("ok", (-1, None))
                assert real == want_sel, (act, cases)
            elif name == "cancel":
                # Mostly an operation still waiting: those are the interesting ones.
                live = [op for op in m.ops if not op.finished] or m.ops
                if not live:
                    continue
                op = live[act[1] % len(live)]
                self.tasks[op.k].cancel()
                m.cancel(op)
            else:
                spec = act[1] if name == "select" else [(act[1], name)]
                op = Op(len(m.ops), name, self.cases(spec))
                m.ops.append(op)
                m.events.append(("start", op))
                self.tasks.append(asyncio.create_task(self._run(op.k, op)))
        for _ in range(QUIESCE):
            await asyncio.sleep(0)
        while m.events:
            what, op = m.events.popleft()
            if what == "start":
                m.start(op, self.records.get(op.k, ("parked",)))
            else:
                m.wake(op)
        self.check(actions)

    def check(self, actions: Any) -> None:
        m = self.model
        for op in m.ops:
            want = op.expected if op.done else ("parked",)
            assert self.real_outcome(op.k) == want, (op, actions)
        for ch, mch in zip(self.chans, m.chans, strict=True):
            assert len(ch) == len(mch.buf), (ch, mch)
            assert ch.closed == mch.closed, (ch, mch)


def sync(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except gorun.WouldBlock:
        return "WouldBlock"
    except gorun.Closed:
        return "Closed"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(caps=caps, steps=st.lists(step, max_size=25), seed=seeds)
@example(  # a value put back goes ahead of the buffer
    caps=[2, 0],
    steps=[
        [("recv", 0)],
        [("send_nowait", 0), ("send_nowait", 0), ("cancel", 0)],
        [("recv_nowait", 0)],
    ],
    seed=0,
)
@example(  # a value put back into an unbuffered channel; a sender still waits for a receiver
    caps=[0, 0],
    steps=[
        [("recv", 0)],
        [("cancel", 0), ("select_default", [(0, "send")])],
        [("send", 0)],
        [("recv_nowait", 0)],
        [("recv_nowait", 0)],
    ],
    seed=0,
)
@example(  # ... or to the next receiver, even one that is itself being cancelled
    caps=[0, 0],
    steps=[
        [("recv", 0)],
        [("select", [(1, "recv"), (0, "recv_ok")])],
        [("recv", 0)],
        [("send_nowait", 0), ("cancel", 0), ("cancel", 1)],
    ],
    seed=0,
)
def test_channels_match_the_model(
    caps: list[int], steps: list[list[tuple[Any, ...]]], seed: int
) -> None:
    async def main() -> None:
        gorun._select._random.seed(seed)  # the same choices when hypothesis replays
        h = Harness(caps)
        for actions in steps:
            await h.step(actions)
        # Close everything: every parked operation ends as the model says.
        await h.step([("close", c) for c in range(NCHANS) if not h.model.chans[c].closed])
        assert all(op.done for op in h.model.ops)

    gorun.run(main(), procs=1)


@settings(max_examples=100, deadline=None)
@given(caps=caps, steps=st.lists(step, max_size=15), seed=seeds)
def test_channels_match_the_model_on_a_plain_asyncio_loop(
    caps: list[int], steps: list[list[tuple[Any, ...]]], seed: int
) -> None:
    async def main() -> None:
        gorun._select._random.seed(seed)
        h = Harness(caps)
        for actions in steps:
            await h.step(actions)

    asyncio.run(main())


class ChannelMachine(RuleBasedStateMachine):
    """The same actions as rules, with tasks parked across rules on one gorun loop."""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner(loop_factory=functools.partial(gorun.new_event_loop, procs=1))
        self.h = Harness([0] * NCHANS)

    @initialize(chan_caps=caps, seed=seeds)
    def make_channels(self, chan_caps: list[int], seed: int) -> None:
        gorun._select._random.seed(seed)
        self.h = Harness(chan_caps)

    def run(self, *actions: tuple[Any, ...]) -> None:
        self.runner.run(self.h.step(list(actions)))

    @rule(c=chan_index)
    def send_nowait(self, c: int) -> None:
        self.run(("send_nowait", c))

    @rule(c=chan_index)
    def recv_nowait(self, c: int) -> None:
        self.run(("recv_nowait", c))

    @rule(c=chan_index)
    def close(self, c: int) -> None:
        self.run(("close", c))

    @rule(kind=st.sampled_from(("send", "recv", "recv_ok")), c=chan_index)
    def start(self, kind: str, c: int) -> None:
        self.run((kind, c))

    @rule(spec=st.lists(case_spec, min_size=1, max_size=3))
    def select(self, spec: list[tuple[int, str]]) -> None:
        self.run(("select", spec))

    @rule(spec=st.lists(case_spec, max_size=3))
    def select_default(self, spec: list[tuple[int, str]]) -> None:
        self.run(("select_default", spec))

    @rule(k=st.integers(0, 1000))
    def cancel(self, k: int) -> None:
        self.run(("cancel", k))

    @rule(k=st.integers(0, 1000), then=action)
    def cancel_then(self, k: int, then: tuple[Any, ...]) -> None:
        self.run(("cancel", k), then)  # the cancel and *then* race on the loop

    @invariant()
    def outcomes_match(self) -> None:
        self.h.check("invariant")

    def teardown(self) -> None:
        self.runner.close()


ChannelMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_channel_machine = ChannelMachine.TestCase
