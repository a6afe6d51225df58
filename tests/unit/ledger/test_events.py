"""Event appends through group commit on both engines."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tether.errors import Conflict, NotFound
from tether.ledger import Ledger, NewEvent


def ev(seq: int, payload: str = "{}", kind: str = "agent.message") -> NewEvent:
    return NewEvent(seq=seq, kind=kind, source="agent", payload=payload, created_at=1.0)


async def make_run(ledger: Ledger) -> str:
    session = await ledger.sessions.create(agent="script")
    run = await ledger.runs.create(
        session_id=session.id,
        agent="script",
        input="",
        created_by=None,
        event=NewEvent(seq=1, kind="run.queued", source="gateway", payload="{}", created_at=1.0),
    )
    return run.id


async def test_append_read_and_idempotence(ledger: Ledger) -> None:
    run_id = await make_run(ledger)
    await ledger.events.append(run_id, 0, [ev(2, '{"a":1}'), ev(3, '{"a":2}')])
    await ledger.events.append(run_id, 0, [ev(2, '{"a":1}')])  # identical: no-op
    with pytest.raises(Conflict) as info:
        await ledger.events.append(run_id, 0, [ev(3, '{"a":"other"}')])
    assert info.value.data == {"run_id": run_id, "seq": 3}
    events = await ledger.events.read(run_id)
    assert [(e.seq, e.payload) for e in events] == [(1, "{}"), (2, '{"a":1}'), (3, '{"a":2}')]
    assert [e.seq for e in await ledger.events.read(run_id, after_seq=1, limit=1)] == [2]
    assert await ledger.events.last_seq(run_id) == 3


async def test_unknown_run_fails_only_its_appender(ledger: Ledger) -> None:
    run_id = await make_run(ledger)

    async def good(seq: int) -> None:
        await ledger.events.append(run_id, 0, [ev(seq)])

    async def bad() -> None:
        await ledger.events.append("run_missing", 0, [ev(2)])

    results = await asyncio.gather(*(good(s) for s in range(2, 40)), bad(), return_exceptions=True)
    assert isinstance(results[-1], NotFound)
    assert all(r is None for r in results[:-1])
    assert await ledger.events.last_seq(run_id) == 39


async def test_a_gateway_that_lost_its_lease_cannot_append(ledger: Ledger) -> None:
    run_id = await make_run(ledger)
    first = await ledger.runs.claim_next("gw-a", 30, now=100.0)
    assert first is not None
    assert first.id == run_id
    await ledger.events.append(run_id, first.epoch, [ev(2, '{"by":"a"}')])
    # gw-a stalls past its lease; gw-b takes the run over
    second = await ledger.runs.reclaim(
        run_id, epoch=first.epoch, owner="gw-b", lease_seconds=30, now=200.0
    )
    assert second is not None
    assert second.epoch == first.epoch + 1

    async def stale(seq: int) -> None:
        await ledger.events.append(run_id, first.epoch, [ev(seq, '{"by":"a"}')])

    async def current(seq: int) -> None:
        await ledger.events.append(run_id, second.epoch, [ev(seq, '{"by":"b"}')])

    # in one group commit: the stale owner's rows are refused, the new owner's written
    results = await asyncio.gather(
        stale(3), current(3), current(4), stale(5), return_exceptions=True
    )
    for refused in (results[0], results[3]):
        assert isinstance(refused, Conflict)
        assert refused.data == {"run_id": run_id, "reason": "fenced", "epoch": second.epoch}
    assert results[1:3] == [None, None]
    await stale(2)  # what it wrote while it held the lease is stored as is: a no-op
    events = await ledger.events.read(run_id)
    assert [(e.seq, e.payload, e.epoch) for e in events] == [
        (1, "{}", 0),
        (2, '{"by":"a"}', first.epoch),
        (3, '{"by":"b"}', second.epoch),
        (4, '{"by":"b"}', second.epoch),
    ]


async def _lock_waiters(conn: Any, database: str) -> int:
    """Sessions of ``database`` waiting for a lock (asyncpg connection ``conn``)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
    return int(await conn.fetchval(query, database))


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_an_append_in_flight_during_a_takeover_never_lands_after_it(
    ledger: Ledger, database_url: str
) -> None:
    """PostgreSQL commits the writer's batch and a takeover concurrently (SQLite serializes
    them). An append whose transaction is still open when another gateway reclaims the run
    must land before the takeover, never after it: the new owner numbers its events from
    what it reads once it holds the lease."""
    import asyncpg

    run_id = await make_run(ledger)
    first = await ledger.runs.claim_next("gw-a", 30, now=100.0)
    assert first is not None
    database = database_url.rsplit("/", 1)[-1]
    blocker = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)  # activity is frozen inside a transaction
    try:
        # an uncommitted row at seq 2 holds gw-a's append mid-transaction (unique index wait)
        held = blocker.transaction()
        await held.start()
        await blocker.execute(
            "INSERT INTO run_events (run_id, seq, kind, source, payload, created_at, epoch) "
            "VALUES ($1, 2, 'x', 'agent', '{}', 1.0, $2)",
            run_id,
            first.epoch,
        )
        stalled = asyncio.create_task(ledger.events.append(run_id, first.epoch, [ev(2)]))
        for _ in range(200):
            if await _lock_waiters(watcher, database) >= 1:
                break
            await asyncio.sleep(0.01)
        assert await _lock_waiters(watcher, database) >= 1

        async def take_over() -> tuple[object, list[int]]:
            second = await ledger.runs.reclaim(
                run_id, epoch=first.epoch, owner="gw-b", lease_seconds=30, now=200.0
            )
            return second, [e.seq for e in await ledger.events.read(run_id)]

        takeover = asyncio.create_task(take_over())
        for _ in range(200):  # the takeover either finishes or waits behind gw-a's append
            if takeover.done() or await _lock_waiters(watcher, database) >= 2:
                break
            await asyncio.sleep(0.01)
        await held.rollback()
        await stalled
        second, seen_by_new_owner = await takeover
    finally:
        await blocker.close()
        await watcher.close()
    assert second is not None
    assert [e.seq for e in await ledger.events.read(run_id)] == seen_by_new_owner == [1, 2]


async def test_many_concurrent_appenders_lose_nothing(ledger: Ledger) -> None:
    runs = [await make_run(ledger) for _ in range(20)]

    async def stream(run_id: str) -> None:
        for seq in range(2, 52):
            await ledger.events.append(run_id, 0, [ev(seq, json.dumps({"n": seq}))])

    await asyncio.gather(*(stream(r) for r in runs))
    for run_id in runs:
        seqs = [e.seq for e in await ledger.events.read(run_id)]
        assert seqs == list(range(1, 52))
    assert ledger.writer.batches < 20 * 50  # group commit batched them


async def test_large_payloads_become_artifacts(ledger: Ledger) -> None:
    run_id = await make_run(ledger)
    big = json.dumps({"text": "界" * 40_000})
    stored = await ledger.events.append(run_id, 0, [ev(2, big)])
    ref = json.loads(stored[0].payload)
    assert ref["size"] == len(big.encode())
    (event,) = await ledger.events.read(run_id, after_seq=1)
    assert json.loads(event.payload) == ref
    artifact = await ledger.events.get_artifact(ref["artifact"])
    assert artifact.content == big.encode()
    assert artifact.run_id == run_id
    assert await ledger.events.full_payload(event) == big  # what a resumed agent sees
    (first,) = await ledger.events.read(run_id, limit=1)
    assert await ledger.events.full_payload(first) == first.payload
    # re-appending the same large event is a no-op, like any identical re-append
    again = await ledger.events.append(run_id, 0, [ev(2, big)])
    assert again[0].payload == stored[0].payload
    with pytest.raises(Conflict):
        await ledger.events.append(run_id, 0, [ev(2, json.dumps({"text": "x" * 90_000}))])
    assert [e.payload for e in await ledger.events.read(run_id, after_seq=1)] == [event.payload]


async def test_session_events_in_run_order(ledger: Ledger) -> None:
    session = await ledger.sessions.create(agent="script")
    ids = []
    for _ in range(3):
        run = await ledger.runs.create(
            session_id=session.id,
            agent="script",
            input="",
            created_by=None,
            event=NewEvent(
                seq=1, kind="run.queued", source="gateway", payload="{}", created_at=1.0
            ),
        )
        ids.append(run.id)
        await ledger.events.append(run.id, 0, [ev(2)])
    events = await ledger.events.read_session(session.id)
    assert [(e.run_id, e.seq) for e in events] == [(r, s) for r in ids for s in (1, 2)]
    after = await ledger.events.read_session(session.id, after_run=ids[1], after_seq=1)
    assert [(e.run_id, e.seq) for e in after] == [(ids[1], 2), (ids[2], 1), (ids[2], 2)]


async def test_retention(ledger: Ledger) -> None:
    from tether.types import RunState

    run_id = await make_run(ledger)
    run = await ledger.runs.claim_next("gw", 30)
    assert run is not None
    await ledger.events.append(run_id, 1, [ev(2)])
    await ledger.runs.transition(run_id, epoch=1, to=RunState.SUCCEEDED, now=1_000.0)
    await ledger.events.put_artifact(
        run_id=None, name="tmp", media_type="text/plain", content=b"x", ttl=10, now=0
    )
    keep = await make_run(ledger)
    result = await ledger.purge(now=1_000.0 + 31 * 86_400)
    assert (result.artifacts, result.events) == (1, 2)
    assert await ledger.events.read(run_id) == []
    assert len(await ledger.events.read(keep)) == 1  # unfinished runs keep their events
