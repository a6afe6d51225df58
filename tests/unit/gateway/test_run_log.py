"""``RunLog.record``: the one path for a run's events, fenced by the lease epoch, optionally
with the state move the event records, published only once committed (both engines)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from tests.support.secrets import secret_samples
from tether.errors import Conflict, InternalError
from tether.gateway.fanout import Fanout
from tether.gateway.run_log import RunLog, encode_event
from tether.ledger import Event, Ledger, NewEvent, Run
from tether.protocol.events import (
    AgentMessage,
    RunCancelled,
    RunFailed,
    RunQueued,
    RunRunning,
    RunSucceeded,
    RunWaiting,
)
from tether.types import RunState

OWNER = "node:inc_1"


class Recorder:
    """A fan-out subscriber of one session that writes what it is handed to a journal."""

    def __init__(self, session_id: str, journal: list[tuple[str, int]] | None = None) -> None:
        self.run_id: str | None = None
        self.session_id: str | None = session_id
        self.events: list[Event] = []
        self.journal = journal if journal is not None else []

    def offer(self, session_id: str, event: Event) -> None:
        self.events.append(event)
        self.journal.append(("published", event.seq))


async def queued(ledger: Ledger) -> Run:
    session = await ledger.sessions.create(agent="script")
    first = encode_event(RunQueued(input="hi", agent="script"), 1, 1.0)
    return await ledger.runs.create(
        session_id=session.id, agent="script", input="hi", created_by=None, event=first
    )


async def claimed(ledger: Ledger) -> Run:
    run = await queued(ledger)
    taken = await ledger.runs.claim_next(OWNER, 30)
    assert taken is not None
    assert taken.id == run.id
    return taken


def watch(fanout: Fanout, run: Run, journal: list[tuple[str, int]] | None = None) -> Recorder:
    recorder = Recorder(run.session_id, journal)
    fanout.add(recorder)
    return recorder


async def test_events_get_the_next_seq_or_the_one_given(ledger: Ledger) -> None:
    log = RunLog(ledger, Fanout(), clock=lambda: 123.5)
    run = await claimed(ledger)
    first, _ = await log.record(run, AgentMessage(text="one"))
    second, _ = await log.record(run, AgentMessage(text="two"))
    chosen, _ = await log.record(run, AgentMessage(text="ten"), seq=10)
    after, _ = await log.record(run, AgentMessage(text="eleven"))
    assert [e.seq for e in (first, second, chosen, after)] == [2, 3, 10, 11]
    assert await log.next_seq(run.id) == 12
    stored = await ledger.events.read(run.id)
    assert [(e.seq, e.kind, e.source, e.epoch) for e in stored[1:]] == [
        (2, "agent.message", "agent", run.epoch),
        (3, "agent.message", "agent", run.epoch),
        (10, "agent.message", "agent", run.epoch),
        (11, "agent.message", "agent", run.epoch),
    ]
    assert stored[1] == first
    assert json.loads(stored[1].payload) == {"text": "one"}
    assert {e.created_at for e in stored[1:]} == {123.5}  # the log's clock


async def test_secrets_are_redacted_before_they_are_stored_or_published(ledger: Ledger) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await claimed(ledger)
    recorder = watch(fanout, run)
    samples = secret_samples()
    text = "\n".join(s.text for s in samples)
    await log.record(run, AgentMessage(text=text))
    stored = (await ledger.events.read(run.id))[-1].payload
    published = recorder.events[-1].payload
    for sample in samples:
        for secret in sample.secrets:
            assert secret not in stored, sample.kind
            assert secret not in published, sample.kind
    assert "[redacted]" in stored


async def test_an_event_under_a_lost_lease_is_refused_and_not_published(ledger: Ledger) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    held = await claimed(ledger)
    recorder = watch(fanout, held)
    # another gateway took the run over (lease expired): epoch + 1
    taken = await ledger.runs.reclaim(
        held.id, epoch=held.epoch, owner="other:inc_2", lease_seconds=30, now=9e12
    )
    assert taken is not None
    assert taken.epoch == held.epoch + 1
    with pytest.raises(Conflict) as info:
        await log.record(held, AgentMessage(text="too late"))
    assert info.value.data.get("reason") == "fenced"
    with pytest.raises(Conflict, match="lease lost"):
        await log.record(held, RunSucceeded(output="too late"), to=RunState.SUCCEEDED)
    assert [e.seq for e in await ledger.events.read(held.id)] == [1]
    assert (await ledger.runs.get(held.id)).state == RunState.RUNNING
    assert recorder.events == []
    ok, _ = await log.record(taken, AgentMessage(text="the new holder"))  # its epoch is current
    assert (ok.seq, ok.epoch) == (2, taken.epoch)


async def test_a_transition_is_recorded_with_its_state_event(ledger: Ledger) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await claimed(ledger)
    recorder = watch(fanout, run)
    waiting, run = await log.record(run, RunWaiting(reason="approval"), to=RunState.WAITING)
    assert run.state == RunState.WAITING
    running, run = await log.record(run, RunRunning(), to=RunState.RUNNING)
    assert run.state == RunState.RUNNING
    done, run = await log.record(
        run, RunSucceeded(output="42"), to=RunState.SUCCEEDED, reason="done", output="42"
    )
    assert (run.state, run.reason, run.output, run.owner) == (
        RunState.SUCCEEDED,
        "done",
        "42",
        None,
    )
    assert run.finished_at is not None
    assert run == await ledger.runs.get(run.id)  # the run as now stored
    stored = await ledger.events.read(run.id)
    assert [(e.seq, e.kind) for e in stored] == [
        (1, "run.queued"),
        (2, "run.waiting"),
        (3, "run.running"),
        (4, "run.succeeded"),
    ]
    assert stored[1:] == [waiting, running, done] == recorder.events
    assert json.loads(done.payload) == {"output": "42", "reason": None}


async def test_a_queued_run_can_end_without_running(ledger: Ledger) -> None:
    log = RunLog(ledger, Fanout())
    run = await queued(ledger)
    event, ended = await log.record(
        run, RunCancelled(reason="cancelled"), to=RunState.CANCELLED, reason="cancelled"
    )
    assert (ended.state, ended.reason, ended.epoch) == (RunState.CANCELLED, "cancelled", 0)
    assert (event.seq, event.kind) == (2, "run.cancelled")


@pytest.mark.parametrize(
    ("event", "to"),
    [
        (AgentMessage(text="done"), RunState.SUCCEEDED),
        (RunFailed(reason="x"), RunState.SUCCEEDED),
        (RunSucceeded(), RunState.FAILED),
        (RunRunning(), RunState.WAITING),
        (RunWaiting(), RunState.CANCELLED),
    ],
)
async def test_the_wrong_event_for_a_state_is_refused_before_anything_is_written(
    ledger: Ledger, event: Any, to: RunState
) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await claimed(ledger)
    recorder = watch(fanout, run)
    with pytest.raises(InternalError, match=f"a move to {to.value} is recorded as"):
        await log.record(run, event, to=to)
    assert await ledger.runs.get(run.id) == run
    assert [e.seq for e in await ledger.events.read(run.id)] == [1]
    assert recorder.events == []


async def test_an_illegal_move_is_a_conflict_and_writes_nothing(ledger: Ledger) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await claimed(ledger)
    _, run = await log.record(run, RunFailed(reason="x"), to=RunState.FAILED)
    recorder = watch(fanout, run)
    with pytest.raises(Conflict, match="terminal states are final"):
        await log.record(run, RunSucceeded(), to=RunState.SUCCEEDED)
    assert (await ledger.runs.get(run.id)).state == RunState.FAILED
    assert [e.kind for e in await ledger.events.read(run.id)] == ["run.queued", "run.failed"]
    assert recorder.events == []


async def test_an_event_is_published_only_after_it_is_committed(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal: list[tuple[str, int]] = []
    append, transition = ledger.events.append, ledger.runs.transition

    async def appended(run_id: str, epoch: int, events: Sequence[NewEvent]) -> Sequence[NewEvent]:
        stored = await append(run_id, epoch, events)
        journal.extend(("committed", e.seq) for e in stored)
        return stored

    async def transitioned(run_id: str, **kw: Any) -> Run:
        run = await transition(run_id, **kw)
        journal.append(("committed", kw["event"].seq))
        return run

    monkeypatch.setattr(ledger.events, "append", appended)
    monkeypatch.setattr(ledger.runs, "transition", transitioned)
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await claimed(ledger)
    watch(fanout, run, journal)
    await log.record(run, AgentMessage(text="a"))
    await log.record(run, RunSucceeded(), to=RunState.SUCCEEDED)
    assert journal == [("committed", 2), ("published", 2), ("committed", 3), ("published", 3)]


async def test_a_large_payload_is_stored_as_an_artifact_and_published_as_stored(
    ledger: Ledger,
) -> None:
    fanout = Fanout()
    log = RunLog(ledger, fanout)
    run = await claimed(ledger)
    recorder = watch(fanout, run)
    big = "x" * (ledger.config.inline_payload_bytes + 1)
    event, _ = await log.record(run, AgentMessage(text=big))
    assert event.payload.startswith('{"artifact":')
    assert recorder.events == [event] == (await ledger.events.read(run.id))[1:]
    assert json.loads(await ledger.events.full_payload(event)) == {"text": big}


async def test_a_large_payload_recorded_with_a_transition_is_stored_as_an_artifact(
    ledger: Ledger,
) -> None:
    log = RunLog(ledger, Fanout())
    run = await claimed(ledger)
    big = "y" * (ledger.config.inline_payload_bytes + 1)
    event, _ = await log.record(run, RunSucceeded(output=big), to=RunState.SUCCEEDED, output=big)
    stored = (await ledger.events.read(run.id))[-1]
    assert stored.payload.startswith('{"artifact":')
    assert event == stored
