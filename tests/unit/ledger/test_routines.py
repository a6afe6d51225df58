"""The routine store on both engines: names are unique, due routines are found, and the
due time moves by compare-and-set: of many gateways advancing one due time, one wins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tether.config import LedgerConfig
from tether.errors import Conflict, NotFound
from tether.ledger import Ledger


async def add(ledger: Ledger, name: str = "standup", **kw: object) -> str:
    session = await ledger.sessions.create(agent="script")
    values: dict[str, object] = {
        "name": name,
        "owner": "usr_alice",
        "session_id": session.id,
        "cron": "0 9 * * 1-5",
        "tz": "Asia/Shanghai",
        "input": "say hi",
        "catch_up": "once",
        "next_fire_at": 1000.0,
        **kw,
    }
    record = await ledger.routines.add(**values)  # type: ignore[arg-type]
    assert record.id.startswith("rtn_")
    return record.id


async def test_add_find_list_and_unique_names(ledger: Ledger) -> None:
    rid = await add(ledger)
    found = await ledger.routines.find("standup")
    assert (found.id, found.state, found.source, found.last_run_id) == (rid, "active", "cli", None)
    assert (await ledger.routines.find(rid)).name == "standup"
    with pytest.raises(Conflict, match="already exists"):
        await add(ledger)
    other = await add(ledger, "nightly", owner="usr_bob")
    assert [r.name for r in await ledger.routines.list()] == ["nightly", "standup"]
    assert [r.id for r in await ledger.routines.list(owner="usr_bob")] == [other]
    session = found.session_id
    assert [r.id for r in await ledger.routines.list(session_id=session)] == [rid]
    with pytest.raises(NotFound):
        await ledger.routines.find("nobody")


async def test_due_next_due_pause_and_remove(ledger: Ledger) -> None:
    a = await add(ledger, "a", next_fire_at=100.0)
    b = await add(ledger, "b", next_fire_at=200.0)
    assert [r.id for r in await ledger.routines.due(150.0)] == [a]
    assert [r.id for r in await ledger.routines.due(250.0)] == [a, b]
    assert await ledger.routines.next_due() == 100.0
    paused = await ledger.routines.set_state(a, "paused", next_fire_at=None)
    assert (paused.state, paused.next_fire_at) == ("paused", None)
    assert [r.id for r in await ledger.routines.due(250.0)] == [b]
    assert await ledger.routines.next_due() == 200.0
    assert not await ledger.routines.advance(a, expect=100.0, next_fire_at=300.0)  # paused
    assert await ledger.routines.remove(b)
    assert not await ledger.routines.remove(b)
    assert await ledger.routines.next_due() is None


async def test_advance_is_a_compare_and_set_on_the_due_time(ledger: Ledger) -> None:
    rid = await add(ledger, next_fire_at=100.0)
    assert await ledger.routines.advance(
        rid, expect=100.0, next_fire_at=160.0, fired_at=100.0, run_id="run_1"
    )
    assert not await ledger.routines.advance(rid, expect=100.0, next_fire_at=160.0)
    record = await ledger.routines.get(rid)
    assert (record.next_fire_at, record.last_fired_at, record.last_run_id) == (
        160.0,
        100.0,
        "run_1",
    )
    assert await ledger.routines.advance(rid, expect=160.0, next_fire_at=220.0)  # skipped
    record = await ledger.routines.get(rid)
    assert (record.next_fire_at, record.last_fired_at) == (220.0, 100.0)


async def test_redefine_keeps_history(ledger: Ledger) -> None:
    rid = await add(ledger, next_fire_at=100.0, source="config")
    await ledger.routines.advance(rid, expect=100.0, next_fire_at=160.0, fired_at=100.0)
    changed = await ledger.routines.redefine(rid, next_fire_at=500.0, cron="*/5 * * * *")
    assert (changed.cron, changed.next_fire_at, changed.last_fired_at) == (
        "*/5 * * * *",
        500.0,
        100.0,
    )
    with pytest.raises(ValueError, match="not a routine's definition"):
        await ledger.routines.redefine(rid, next_fire_at=1.0, state="paused")


async def test_many_gateways_advancing_one_due_time_one_wins(
    database_url: str | None, tmp_path: Path
) -> None:
    config = LedgerConfig(database_url=database_url)
    ledgers = [await Ledger.open(config, tmp_path) for _ in range(6)]
    try:
        rid = await add(ledgers[0], next_fire_at=100.0)
        for step in range(20):
            due = 100.0 + step * 60

            async def attempt(ledger: Ledger, due: float = due) -> bool:
                return await ledger.routines.advance(
                    rid, expect=due, next_fire_at=due + 60, fired_at=due
                )

            won = await asyncio.gather(*(attempt(led) for led in ledgers))
            assert sum(won) == 1, f"due time {due}: {sum(won)} gateways advanced it"
        assert (await ledgers[0].routines.get(rid)).next_fire_at == 100.0 + 20 * 60
    finally:
        for led in ledgers:
            await led.aclose()
