"""Requests and users in the ledger, on both engines: one decision wins, handles stay
unique among open requests, expiry and run ends close them, tokens are kept hashed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether.errors import Conflict, NotFound
from tether.ledger import Ledger, RequestRecord
from tether.security.credentials import hash_secret, parse_user_token


async def _request(ledger: Ledger, **kw: Any) -> RequestRecord:
    run = await _run(ledger)
    params: dict[str, Any] = {
        "kind": "approval",
        "run_id": run[0],
        "session_id": run[1],
        "call_id": "call_1",
        "summary": "shell in app: make",
        "approvers": ["usr_a"],
        "expires_at": 1000.0,
        "created_by": "usr_a",
        "tool": "shell",
        "args_sha256": "f" * 64,
        "plan": {"workspace": "app"},
        "now": 100.0,
    }
    params.update(kw)
    return await ledger.requests.create(**params)


async def _run(ledger: Ledger) -> tuple[str, str]:
    session = await ledger.sessions.create(agent="script", created_by="usr_a")
    from tether.gateway.run_log import encode_event
    from tether.protocol.events import RunQueued

    run = await ledger.runs.create(
        session_id=session.id,
        agent="script",
        input="x",
        created_by="usr_a",
        event=encode_event(RunQueued(input="x", agent="script"), 1, 1.0),
    )
    return run.id, session.id


async def test_exactly_one_decision_wins(ledger: Ledger) -> None:
    record = await _request(ledger)
    assert record.id.startswith("req_")
    assert len(record.id) == 4 + 32
    results = await asyncio.gather(
        *(
            ledger.requests.resolve(
                record.id, state="allowed", decision=d, by=f"usr_{i}", now=200.0
            )
            for i, d in enumerate(["allow_once", "deny", "allow_session", "allow_once"] * 3)
        ),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    stored = await ledger.requests.get(record.id)
    assert (stored.state, stored.decided_by) == ("allowed", wins[0].decided_by)


async def test_an_expired_request_cannot_be_decided(ledger: Ledger) -> None:
    record = await _request(ledger, expires_at=150.0)
    with pytest.raises(Conflict, match="expired"):
        await ledger.requests.resolve(
            record.id, state="allowed", decision="allow_once", by="usr_a", now=151.0
        )
    assert (await ledger.requests.get(record.id)).state == "expired"


async def test_expire_due_and_close_for_run(ledger: Ledger) -> None:
    soon = await _request(ledger, expires_at=150.0)
    later = await _request(ledger, expires_at=500.0)
    expired = await ledger.requests.expire_due(now=200.0)
    assert [r.id for r in expired] == [soon.id]
    closed = await ledger.requests.close_for_run(later.run_id, by="run.cancel", now=201.0)
    assert [(r.id, r.state, r.decision) for r in closed] == [(later.id, "cancelled", "deny")]
    assert await ledger.requests.open() == []


async def test_handles_are_unique_among_a_sessions_open_requests(ledger: Ledger) -> None:
    run_id, session_id = await _run(ledger)
    made = [
        await ledger.requests.create(
            kind="question",
            run_id=run_id,
            session_id=session_id,
            call_id=None,
            summary=f"q{i}",
            approvers=["usr_a"],
            expires_at=1e12,
            created_by="usr_a",
        )
        for i in range(40)
    ]
    handles = [r.handle for r in made]
    assert len(set(handles)) == len(handles)
    assert all(len(h) >= 4 for h in handles)
    (found,) = await ledger.requests.by_handle(handles[0].upper())
    assert found.id == made[0].id
    await ledger.requests.close_for_run(run_id, by="x")
    assert await ledger.requests.by_handle(handles[0]) == []


async def test_users_keep_only_a_hash_of_their_token(ledger: Ledger) -> None:
    user, token = await ledger.users.add("alice", "member")
    parsed = parse_user_token(token)
    assert parsed is not None
    assert parsed[0] == user.id
    assert user.token_hash == hash_secret(parsed[1])
    assert token not in repr(await ledger.users.list())
    with pytest.raises(Conflict):
        await ledger.users.add("alice", "viewer")
    assert (await ledger.users.find("alice")).id == user.id
    revoked = await ledger.users.revoke("alice")
    assert (revoked.status, revoked.token_hash) == ("revoked", None)
    with pytest.raises(NotFound):
        await ledger.users.find("nobody")


async def test_session_rules_are_kept_in_order(ledger: Ledger) -> None:
    _, session_id = await _run(ledger)
    await ledger.sessions.add_rules(session_id, ['{"a":1}', '{"b":2}'], created_by="usr_a")
    await ledger.sessions.add_rules(session_id, ['{"c":3}'], created_by="usr_a")
    assert list(await ledger.sessions.rules(session_id)) == ['{"a":1}', '{"b":2}', '{"c":3}']
