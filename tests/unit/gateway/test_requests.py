"""The request broker: who may decide, one decision, answers kept out of the ledger."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import unit
from tether.config import PolicyConfig
from tether.errors import Conflict, Forbidden, InvalidParams, NotFound
from tether.gateway.auth import Principal
from tether.gateway.requests import RequestBroker
from tether.ledger import Ledger, RequestRecord
from tether.types import Role

ALICE = Principal("usr_alice", frozenset({Role.CLIENT}), user_role="member", name="alice")
BOB = Principal("usr_bob", frozenset({Role.CLIENT}), user_role="member", name="bob")
OWNER = Principal("admin", frozenset({Role.ADMIN, Role.CLIENT}), user_role="owner")
SECRET = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


async def question(
    broker: RequestBroker, ledger: Ledger, timeout: float | None = None
) -> RequestRecord:
    session = await ledger.sessions.create(agent="script", created_by=ALICE.id)
    return await broker.open(
        kind="question",
        run_id=None,
        session_id=session.id,
        call_id=None,
        summary="which token?",
        approvers=[ALICE.id],
        created_by=ALICE.id,
        timeout=timeout,
    )


async def test_an_answer_reaches_the_waiter_as_typed_but_the_ledger_redacted(
    ledger: Ledger,
) -> None:
    broker = RequestBroker(ledger, PolicyConfig())
    record = await question(broker, ledger)
    waiter = asyncio.create_task(broker.wait(record))
    await asyncio.sleep(0.05)
    answered = await broker.resolve(ALICE, record.handle, decision=None, answer=f"use {SECRET}")
    got = await asyncio.wait_for(waiter, unit(5))
    assert got.answer == f"use {SECRET}"
    assert SECRET not in (answered.answer or "")
    stored = await ledger.requests.get(record.id)
    assert stored.state == "answered"
    assert SECRET not in (stored.answer or "")
    assert "[redacted]" in (stored.answer or "")


async def test_only_permitted_people_decide(ledger: Ledger) -> None:
    broker = RequestBroker(ledger, PolicyConfig())
    record = await question(broker, ledger)
    with pytest.raises(NotFound):  # bob cannot see alice's request at all
        await broker.resolve(BOB, record.handle, decision=None, answer="x")
    with pytest.raises(InvalidParams):  # a question takes an answer
        await broker.resolve(ALICE, record.id, decision="allow_once", answer=None)
    done = await broker.resolve(OWNER, record.id, decision=None, answer="fine")
    assert (done.state, done.decided_by) == ("answered", "admin")
    with pytest.raises(Conflict):
        await broker.resolve(ALICE, record.id, decision=None, answer="again")


async def test_a_visible_request_may_still_be_forbidden(ledger: Ledger) -> None:
    broker = RequestBroker(ledger, PolicyConfig())
    record = await question(broker, ledger)
    # the session's creator sees it, but the approvers list names someone else
    other = await ledger.sessions.create(agent="script", created_by=BOB.id)
    theirs = await broker.open(
        kind="question",
        run_id=None,
        session_id=other.id,
        call_id=None,
        summary="?",
        approvers=[ALICE.id],
        created_by=ALICE.id,
    )
    with pytest.raises(Forbidden):
        await broker.resolve(BOB, theirs.handle, decision=None, answer="x")
    assert [r.id for r in await broker.list_for(ALICE)] == [record.id, theirs.id]
    assert await broker.list_for(BOB) == []


async def test_a_waiter_marks_its_request_expired(ledger: Ledger) -> None:
    broker = RequestBroker(ledger, PolicyConfig())
    record = await question(broker, ledger, timeout=0.2)
    ended = await asyncio.wait_for(broker.wait(record), unit(5))
    assert ended.state == "expired"
