"""Conversations, receipts, channel identities and deliveries in the ledger (both engines)."""

from __future__ import annotations

import time

import pytest

from tether.errors import Conflict, NotFound
from tether.ledger import Ledger
from tether.ledger.records import NewEvent


async def test_a_receipt_is_written_once_claimed_once_and_found_again_if_its_claim_went_stale(
    ledger: Ledger,
) -> None:
    conv = ledger.conversations
    assert await conv.record("webhook.a", "e1", message="{}", message_id="m1", conversation_id="k")
    assert not await conv.record(
        "webhook.a", "e1", message="{}", message_id="m1", conversation_id="k"
    )
    assert await conv.record("webhook.b", "e1", message="{}", message_id=None, conversation_id="k")
    now = time.time()
    claimed = await conv.claim("webhook.a", "e1", "gw-1", stale_before=now - 60)
    assert claimed is not None
    assert claimed.status == "processing"
    assert await conv.claim("webhook.a", "e1", "gw-2", stale_before=now - 60) is None
    # the first gateway died: after the stale time another may take it
    pending = await conv.pending(stale_before=now + 1)
    assert {(r.channel, r.event_id) for r in pending} == {("webhook.a", "e1"), ("webhook.b", "e1")}
    again = await conv.claim("webhook.a", "e1", "gw-2", stale_before=now + 1)
    assert again is not None
    assert again.claimed_by == "gw-2"
    await conv.finish("webhook.a", "e1", "ignored", detail="ignored")
    done = await conv.get_receipt("webhook.a", "e1")
    assert (done.status, done.message) == ("ignored", None)
    assert await conv.claim("webhook.a", "e1", "gw-3", stale_before=now + 10) is None
    assert [r.channel for r in await conv.pending(stale_before=now + 10)] == ["webhook.b"]


async def test_a_claim_of_an_earlier_incarnation_is_dead_at_once_and_ones_own_never(
    ledger: Ledger,
) -> None:
    conv = ledger.conversations
    now = time.time()
    for event_id, owner in (("old", "node-a:inc_1"), ("own", "node-a:inc_2"), ("b", "node-b:x")):
        assert await conv.record(
            "webhook.a",
            event_id,
            message="{}",
            message_id=None,
            conversation_id="k",
            claimed_by=owner,
            now=now,
        )
    fresh = now - 60  # no claim is stale by time
    found = await conv.pending(
        stale_before=fresh, dead_owners="node-a:", exclude_owner="node-a:inc_2"
    )
    assert [r.event_id for r in found] == ["old"]
    # this incarnation never takes its own, nor a live claim of another node
    for event_id in ("own", "b"):
        assert (
            await conv.claim(
                "webhook.a",
                event_id,
                "node-a:inc_2",
                stale_before=fresh,
                dead_owners="node-a:",
                exclude_owner="node-a:inc_2",
            )
            is None
        )
    taken = await conv.claim(
        "webhook.a",
        "old",
        "node-a:inc_2",
        stale_before=fresh,
        dead_owners="node-a:",
        exclude_owner="node-a:inc_2",
    )
    assert taken is not None
    assert taken.claimed_by == "node-a:inc_2"
    # a prefix is a prefix: "node-a" does not match "node-ab", nor do LIKE wildcards leak
    assert await conv.record(
        "webhook.a",
        "ab",
        message="{}",
        message_id=None,
        conversation_id="k",
        claimed_by="node-ab:inc",
        now=now,
    )
    by_prefix = await conv.pending(stale_before=fresh, dead_owners="node-a:")
    assert {r.event_id for r in by_prefix} == {"old", "own"}  # not node-ab's
    assert await conv.pending(stale_before=fresh, dead_owners="%") == []
    # once stale by time, another node's claim is dead too
    later = await conv.pending(stale_before=now + 1, exclude_owner="node-a:inc_2")
    assert {r.event_id for r in later} == {"b", "ab"}


async def test_a_run_and_its_receipt_commit_together(ledger: Ledger) -> None:
    await ledger.conversations.record("c", "e", message="{}", message_id="m", conversation_id=None)
    await ledger.conversations.claim("c", "e", "gw", stale_before=0)
    session = await ledger.sessions.create(agent="operator")
    run = await ledger.runs.create(
        session_id=session.id,
        agent="operator",
        input="hi",
        created_by=None,
        event=NewEvent(seq=1, kind="run.queued", source="gateway", payload="{}", created_at=1.0),
        receipt=("c", "e"),
        detail="started",
    )
    receipt = await ledger.conversations.get_receipt("c", "e")
    assert (receipt.status, receipt.run_id, receipt.detail) == ("done", run.id, "started")
    assert (await ledger.conversations.for_run(run.id)) == receipt
    assert await ledger.conversations.pending(stale_before=time.time() + 100) == []


async def test_a_conversation_points_at_one_session_at_a_time(ledger: Ledger) -> None:
    conv = await ledger.conversations.ensure("webhook.a", "chat", "t1", kind="topic", lang="zh")
    assert (conv.id, conv.kind, conv.lang, conv.session_id) == (
        "webhook.a:chat:t1",
        "topic",
        "zh",
        None,
    )
    first = await ledger.sessions.create(agent="operator", conversation_id=conv.id)
    second = await ledger.sessions.create(agent="operator", conversation_id=conv.id)
    assert await ledger.conversations.set_session(conv.id, first.id, expect=None)
    assert not await ledger.conversations.set_session(conv.id, second.id, expect=None)
    assert await ledger.conversations.set_session(conv.id, second.id)  # /new: unconditional
    view = await ledger.conversations.view(conv.id)
    assert view is not None
    assert (view.session.id, view.queued, view.active) == (second.id, 0, 0)  # type: ignore[union-attr]
    for _ in range(2):
        await ledger.runs.create(
            session_id=second.id,
            agent="operator",
            input="x",
            created_by=None,
            event=NewEvent(
                seq=1, kind="run.queued", source="gateway", payload="{}", created_at=1.0
            ),
        )
    busy = await ledger.conversations.view(conv.id)
    assert busy is not None
    assert (busy.queued, busy.active, busy.conversation.session_id) == (2, 0, second.id)
    assert await ledger.conversations.view("webhook.a:none") is None
    bare = await ledger.conversations.view((await ledger.conversations.ensure("w", "x")).id)
    assert bare is not None
    assert bare.session is None
    again = await ledger.conversations.ensure("webhook.a", "chat", "t1", lang="en")
    assert (again.session_id, again.lang) == (second.id, "en")
    with pytest.raises(NotFound):
        await ledger.conversations.get("webhook.a:nope")


async def test_identities_link_to_one_user_and_pairing_codes_work_once(ledger: Ledger) -> None:
    alice, _ = await ledger.users.add("alice", "member")
    bob, _ = await ledger.users.add("bob", "member")
    ids = ledger.identities
    await ids.link("webhook.a", "u1", alice.id, by="admin")
    await ids.link("webhook.a", "u1", alice.id, by="admin")  # again: fine
    with pytest.raises(Conflict):
        await ids.link("webhook.a", "u1", bob.id, by="admin")
    assert (await ids.user_of("webhook.a", "u1")).id == alice.id  # type: ignore[union-attr]
    assert await ids.user_of("webhook.b", "u1") is None  # per channel
    await ledger.users.revoke("alice")
    assert await ids.user_of("webhook.a", "u1") is None  # a revoked user is nobody
    code, _ = await ids.new_pairing_code(bob.id, ttl=60)
    assert await ids.pair("WRONG-CODE-0000-0000", "webhook.a", "u2") is None
    paired = await ids.pair(code.lower().replace("-", " "), "webhook.a", "u2")  # retyped
    assert paired is not None
    assert paired.id == bob.id
    assert await ids.pair(code, "webhook.a", "u3") is None  # once
    expired, _ = await ids.new_pairing_code(bob.id, ttl=-1)
    assert await ids.pair(expired, "webhook.a", "u4") is None
    assert [i.external_id for i in await ids.of_user(bob.id)] == ["u2"]
    with pytest.raises(NotFound):
        await ids.unlink("webhook.a", "nobody")
    assert (await ids.unlink("webhook.a", "u2")).user_id == bob.id


async def test_a_delivery_key_is_recorded_once_and_old_settled_ones_expire(
    ledger: Ledger,
) -> None:
    kw = {"channel": "webhook.a", "conversation_id": "k", "run_id": None, "kind": "reply"}
    first = await ledger.deliveries.enqueue(idempotency_key="r:1", content="x", **kw)  # type: ignore[arg-type]
    assert first is not None
    assert first.state == "pending"
    assert await ledger.deliveries.enqueue(idempotency_key="r:1", content="x", **kw) is None  # type: ignore[arg-type]
    (claimed,) = await ledger.deliveries.claim("gw", lease=30, limit=10)
    assert await ledger.deliveries.settle(
        claimed.id, "gw", state="delivered", platform_message_id="m1"
    )
    (stored,) = await ledger.deliveries.list(conversation_id="k")
    assert (stored.state, stored.platform_message_id, stored.attempts) == ("delivered", "m1", 1)
    await ledger.conversations.record(
        "c", "old", message="{}", message_id=None, conversation_id=None
    )
    await ledger.conversations.claim("c", "old", "gw", stale_before=0)
    await ledger.conversations.finish("c", "old", "done")
    await ledger.conversations.record(
        "c", "todo", message="{}", message_id=None, conversation_id=None
    )
    result = await ledger.purge(now=time.time() + 31 * 86_400)
    assert (result.receipts, result.deliveries) == (1, 1)
    assert (await ledger.conversations.get_receipt("c", "todo")).status == "received"


async def test_deliveries_are_claimed_head_of_line_per_conversation_and_leases_expire(
    ledger: Ledger,
) -> None:
    d = ledger.deliveries

    async def put(conv: str, key: str) -> str:
        rec = await d.enqueue(
            channel="w",
            conversation_id=conv,
            run_id=None,
            kind="notice",
            content="{}",
            idempotency_key=key,
        )
        assert rec is not None
        return rec.id

    a1, a2, b1 = await put("a", "a1"), await put("a", "a2"), await put("b", "b1")
    now = time.time()
    got = await d.claim("gw-1", lease=30, limit=10, now=now)
    assert sorted(r.id for r in got) == sorted([a1, b1])  # a2 waits behind a1
    assert await d.claim("gw-2", lease=30, limit=10, now=now) == []
    # a1 fails and is retried later: a2 still waits (order), b is not held up
    assert await d.settle(a1, "gw-1", state="pending", retry_at=now + 60, error="HTTP 503")
    assert await d.settle(b1, "gw-1", state="delivered")
    b2 = await put("b", "b2")
    assert [r.id for r in await d.claim("gw-1", lease=30, limit=10, now=now + 1)] == [b2]
    assert await d.next_due() is not None
    # a lease that runs out (its gateway died) is taken by another; the old owner's
    # settle is refused
    again = {r.id: r for r in await d.claim("gw-2", lease=30, limit=10, now=now + 61)}
    assert set(again) == {a1, b2}  # a1 is due; gw-1's lease on b2 ran out
    assert again[a1].attempts == 1
    later = await d.claim("gw-3", lease=30, limit=10, now=now + 61 + 31)
    assert sorted(r.id for r in later) == sorted([a1, b2])
    assert not await d.settle(a1, "gw-2", state="delivered")  # gw-3 has it now
    assert await d.settle(a1, "gw-3", state="dead", error="refused: HTTP 400")
    (next_a,) = await d.claim("gw-3", lease=30, limit=10, now=now + 100)
    assert next_a.id == a2  # a dead delivery does not block its conversation


async def test_the_requests_a_run_showed_are_found_with_the_message_that_shows_each(
    ledger: Ledger,
) -> None:
    store = ledger.deliveries

    async def sent(key: str, kind: str, run_id: str, message_id: str | None) -> None:
        made = await store.enqueue(
            channel="feishu", conversation_id="k", run_id=run_id, kind=kind,
            content=f'{{"key":"{key}"}}', idempotency_key=key,
        )  # fmt: skip
        assert made is not None
        (claimed,) = await store.claim("gw", lease=30, limit=10)
        state = "delivered" if message_id else "dead"
        assert await store.settle(claimed.id, "gw", state=state, platform_message_id=message_id)

    await sent("a", "request", "run_1", "om_1")
    await sent("b", "notice", "run_1", "om_2")  # not a request
    await sent("c", "request", "run_2", "om_3")  # another run's
    await sent("d", "request", "run_1", None)  # never shown
    await sent("e", "request", "run_1", "om_4")
    assert await store.requests_shown("run_1") == [("om_1", '{"key":"a"}'), ("om_4", '{"key":"e"}')]
    assert await store.requests_shown("run_9") == []
