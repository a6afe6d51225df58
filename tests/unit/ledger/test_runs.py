"""Runs and leases on both engines: claims, renewals, fencing, transitions, recovery."""

from __future__ import annotations

import pytest

from tether.errors import Conflict, NotFound
from tether.ledger import Ledger, NewEvent
from tether.types import RunState

T0 = 1_000_000.0


def ev(kind: str = "run.queued", seq: int = 1) -> NewEvent:
    return NewEvent(seq=seq, kind=kind, source="gateway", payload="{}", created_at=T0)


async def new_run(
    ledger: Ledger, session_id: str | None = None, text: str = "hi"
) -> tuple[str, str]:
    if session_id is None:
        session_id = (await ledger.sessions.create(agent="script")).id
    run = await ledger.runs.create(
        session_id=session_id, agent="script", input=text, created_by="t", event=ev(), now=T0
    )
    return session_id, run.id


async def test_create_writes_the_first_event(ledger: Ledger) -> None:
    _, run_id = await new_run(ledger)
    run = await ledger.runs.get(run_id)
    assert (run.state, run.epoch, run.attempts, run.owner) == (RunState.QUEUED, 0, 0, None)
    assert [e.seq for e in await ledger.events.read(run_id)] == [1]
    with pytest.raises(NotFound):
        await ledger.runs.create(
            session_id="ses_missing", agent="a", input="", created_by=None, event=ev()
        )
    with pytest.raises(NotFound):
        await ledger.runs.get("run_missing")


async def test_claim_renew_release_and_fencing(ledger: Ledger) -> None:
    _, run_id = await new_run(ledger)
    claimed = await ledger.runs.claim_next("gw-a", 30, now=T0)
    assert claimed is not None
    assert (claimed.id, claimed.state, claimed.owner, claimed.epoch, claimed.attempts) == (
        run_id,
        RunState.RUNNING,
        "gw-a",
        1,
        1,
    )
    assert claimed.lease_expires_at == T0 + 30
    assert await ledger.runs.claim_next("gw-b", 30, now=T0) is None  # nothing else queued

    renewed = await ledger.runs.renew(run_id, "gw-a", 1, 60, now=T0 + 10)
    assert renewed.lease_expires_at == T0 + 70
    with pytest.raises(Conflict):
        await ledger.runs.renew(run_id, "gw-b", 1, 60, now=T0 + 10)  # not the owner
    with pytest.raises(Conflict):
        await ledger.runs.renew(run_id, "gw-a", 2, 60, now=T0 + 10)  # wrong epoch

    # the lease expires; another gateway reclaims with epoch + 1
    stale = await ledger.runs.reclaimable(now=T0 + 100)
    assert [r.id for r in stale] == [run_id]
    taken = await ledger.runs.reclaim(run_id, epoch=1, owner="gw-b", lease_seconds=30, now=T0 + 100)
    assert taken is not None
    assert (taken.owner, taken.epoch, taken.attempts) == ("gw-b", 2, 2)
    # the old owner is fenced out of every write
    with pytest.raises(Conflict):
        await ledger.runs.renew(run_id, "gw-a", 1, 30, now=T0 + 101)
    with pytest.raises(Conflict, match="lease lost"):
        await ledger.runs.transition(run_id, epoch=1, to=RunState.SUCCEEDED, now=T0 + 101)
    assert not await ledger.runs.release(run_id, "gw-a", 1)
    # a second reclaim with the stale epoch loses
    assert (
        await ledger.runs.reclaim(run_id, epoch=1, owner="gw-c", lease_seconds=30, now=T0 + 200)
        is None
    )

    assert await ledger.runs.release(run_id, "gw-b", 2, now=T0 + 102)
    released = await ledger.runs.get(run_id)
    assert (released.owner, released.state) == (None, RunState.RUNNING)
    assert [r.id for r in await ledger.runs.reclaimable(now=T0 + 103)] == [run_id]  # at once


async def test_dead_incarnation_is_reclaimable_before_expiry(ledger: Ledger) -> None:
    await new_run(ledger)
    run = await ledger.runs.claim_next("node1:old", 300, now=T0)
    assert run is not None
    assert await ledger.runs.reclaimable(now=T0 + 1) == []
    found = await ledger.runs.reclaimable(
        now=T0 + 1, dead_owners="node1:", exclude_owner="node1:new"
    )
    assert [r.id for r in found] == [run.id]
    taken = await ledger.runs.reclaim(
        run.id, epoch=1, owner="node1:new", lease_seconds=30, now=T0 + 1, dead_owners="node1:"
    )
    assert taken is not None
    assert taken.owner == "node1:new"


async def test_one_active_run_per_session_and_fifo(ledger: Ledger) -> None:
    session_id, first = await new_run(ledger, text="1")
    _, second = await new_run(ledger, session_id, text="2")
    _, other = await new_run(ledger, text="other session")
    a = await ledger.runs.claim_next("gw", 30, now=T0)
    b = await ledger.runs.claim_next("gw", 30, now=T0)
    assert a is not None
    assert b is not None
    assert (a.id, b.id) == (first, other)  # the second run of the session waits its turn
    assert await ledger.runs.claim_next("gw", 30, now=T0) is None
    await ledger.runs.transition(
        first, epoch=a.epoch, to=RunState.SUCCEEDED, event=ev("run.succeeded", 2)
    )
    c = await ledger.runs.claim_next("gw", 30, now=T0)
    assert c is not None
    assert c.id == second


async def test_transition_table_and_terminal_states(ledger: Ledger) -> None:
    _, run_id = await new_run(ledger)
    run = await ledger.runs.claim_next("gw", 30, now=T0)
    assert run is not None
    waiting = await ledger.runs.transition(
        run_id, epoch=1, to=RunState.WAITING, event=ev("run.waiting", 2)
    )
    assert waiting.state == RunState.WAITING
    with pytest.raises(Conflict, match="illegal run transition waiting -> queued"):
        await ledger.runs.transition(run_id, epoch=1, to=RunState.QUEUED)
    await ledger.runs.transition(run_id, epoch=1, to=RunState.RUNNING)
    done = await ledger.runs.transition(
        run_id, epoch=1, to=RunState.SUCCEEDED, output="ok", event=ev("run.succeeded", 3)
    )
    assert (done.state, done.output, done.owner) == (RunState.SUCCEEDED, "ok", None)
    assert done.finished_at is not None
    assert [e.kind for e in await ledger.events.read(run_id)] == [
        "run.queued",
        "run.waiting",
        "run.succeeded",
    ]
    for target in RunState:
        with pytest.raises(Conflict, match="terminal"):
            await ledger.runs.transition(run_id, epoch=1, to=target)
    with pytest.raises(NotFound):
        await ledger.runs.transition("run_nope", epoch=1, to=RunState.FAILED)


async def test_cancel_requests_and_queued_cancel(ledger: Ledger) -> None:
    _, queued = await new_run(ledger)
    cancelled = await ledger.runs.transition(
        queued, epoch=0, to=RunState.CANCELLED, reason="cancelled", event=ev("run.cancelled", 2)
    )
    assert cancelled.state == RunState.CANCELLED
    _, active = await new_run(ledger)
    run = await ledger.runs.claim_next("gw", 30, now=T0)
    assert run is not None
    flagged = await ledger.runs.request_cancel(active, now=T0 + 5)
    assert flagged.cancel_requested_at == T0 + 5
    again = await ledger.runs.request_cancel(active, now=T0 + 9)
    assert again.cancel_requested_at == T0 + 5  # idempotent
    renewed = await ledger.runs.renew(active, "gw", run.epoch, 30)
    assert renewed.cancel_requested_at == T0 + 5  # the owner learns of it on renewal


async def test_list_pages_newest_first(ledger: Ledger) -> None:
    session_id, _ = await new_run(ledger)
    ids = [(await new_run(ledger, session_id))[1] for _ in range(4)]
    page, cursor = await ledger.runs.list(session_id=session_id, limit=3)
    assert [r.id for r in page] == ids[::-1][:3]
    assert cursor is not None
    rest, end = await ledger.runs.list(session_id=session_id, limit=3, before=cursor)
    assert len(rest) == 2
    assert end is None
    queued, _ = await ledger.runs.list(states=["queued"], limit=100)
    assert len(queued) == 5


async def test_transition_conflicts_are_clear(ledger: Ledger) -> None:
    session_id, first = await new_run(ledger)
    _, second = await new_run(ledger, session_id)
    run = await ledger.runs.claim_next("gw", 30, now=T0)
    assert run is not None
    with pytest.raises(Conflict, match="already has an active run"):
        await ledger.runs.transition(second, epoch=0, to=RunState.RUNNING)
    with pytest.raises(Conflict, match="already has an event at seq 1"):
        await ledger.runs.transition(
            first, epoch=1, to=RunState.WAITING, event=ev("run.waiting", 1)
        )
    assert (await ledger.runs.get(first)).state == RunState.RUNNING  # nothing half-done
