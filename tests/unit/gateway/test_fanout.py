"""Fan-out to subscribers that are not sockets: backlog then live, no gap, no duplicate."""

from __future__ import annotations

import asyncio

from tests.conftest import unit
from tether.gateway.fanout import Fanout, Resync, Subscription
from tether.gateway.run_log import RunLog
from tether.ledger import Event, Ledger, NewEvent, Run
from tether.protocol.events import AgentMessage


class ListSink:
    """An in-process consumer (as a channel renderer or the outbox worker will be)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.events: list[Event] = []
        self.resyncs: list[Resync] = []
        self.capacity = capacity

    @property
    def closing(self) -> bool:
        return False

    def send(self, subscription: str, session_id: str, event: Event) -> bool:
        if len(self.events) >= self.capacity:
            return False
        self.events.append(event)
        return True

    async def room(self) -> None:
        await asyncio.sleep(0)  # a slow reader: the backlog yields to live appends

    def resync(self, note: Resync) -> None:
        self.resyncs.append(note)


async def new_run(ledger: Ledger) -> Run:
    session = await ledger.sessions.create(agent="script")
    queued = NewEvent(seq=1, kind="run.queued", source="gateway", payload="{}", created_at=1.0)
    return await ledger.runs.create(
        session_id=session.id, agent="script", input="", created_by=None, event=queued
    )


async def test_backlog_then_live_without_gap_or_duplicate(ledger: Ledger) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await new_run(ledger)
    for i in range(2, 300):
        await log.record(run, AgentMessage(text=f"m{i}"), seq=i)
    sink = ListSink()
    sub = Subscription(sink, fanout, run_id=run.id)
    sub.start(ledger)
    for i in range(300, 400):  # appended while the backlog is being read
        await log.record(run, AgentMessage(text=f"m{i}"), seq=i)
    for _ in range(1000):
        if sub.live and len(sink.events) == 399:
            break
        await asyncio.sleep(0.01)
    assert [e.seq for e in sink.events] == list(range(1, 400))
    await log.record(run, AgentMessage(text="last"), seq=400)
    assert sink.events[-1].seq == 400
    sub.close()


async def test_a_session_subscription_starts_from_the_whole_history(ledger: Ledger) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    first = await new_run(ledger)
    await log.record(first, AgentMessage(text="a"), seq=2)
    sink = ListSink()
    sub = Subscription(sink, fanout, session_id=first.session_id, after={})
    sub.start(ledger)
    await asyncio.wait_for(_until(lambda: sub.live), unit(5))
    assert [(e.run_id, e.seq) for e in sink.events] == [(first.id, 1), (first.id, 2)]
    sub.close()


async def test_a_consumer_that_cannot_keep_up_is_told_where_to_resume(ledger: Ledger) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await new_run(ledger)
    sink = ListSink(capacity=3)
    sub = Subscription(sink, fanout, run_id=run.id, on_end=lambda s: None)
    sub.start(ledger)
    await asyncio.wait_for(_until(lambda: sub.live), unit(5))
    for i in range(2, 6):
        await log.record(run, AgentMessage(text=f"m{i}"), seq=i)
    assert sub.closed
    (note,) = sink.resyncs
    assert (note.reason, note.after) == ("slow_consumer", {run.id: 3})


async def _until(check: object) -> None:
    while not check():  # type: ignore[operator]
        await asyncio.sleep(0.01)
