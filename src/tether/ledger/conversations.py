"""Conversations, their current session, and the durable receipts of inbound messages.

A receipt is written (with the message) before a channel acknowledges its platform:
``received``, then ``processing`` while one gateway claims it, then ``done`` (its run,
if it started one, is set in the same transaction that created the run), ``ignored``
(a group message not addressed to tether) or ``refused`` (a stranger). A duplicate
(channel, event id) is refused by the primary key. Receipts left ``received`` or
``processing`` by a gateway that died are found by :meth:`ConversationStore.pending`.
"""

from __future__ import annotations

import time

import msgspec
from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tether.errors import NotFound
from tether.ledger.engine import Database
from tether.ledger.records import Session, from_row
from tether.ledger.schema import conversations, inbound_receipts, runs, sessions
from tether.ledger.sessions import conversation_key

__all__ = ["ConversationRecord", "ConversationStore", "ConversationView", "Receipt"]


class ConversationRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    channel: str
    chat_id: str
    thread: str | None
    title: str | None
    created_at: float
    session_id: str | None = None
    """The session new messages go to (``/new`` replaces it)."""
    kind: str = "p2p"
    """``p2p``, ``group`` or ``topic`` (a thread of a group)."""
    lang: str | None = None
    """The language its people last wrote in (``en``, ``zh``)."""
    updated_at: float | None = None


class ConversationView(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation with its current session and how busy that is, read at once."""

    conversation: ConversationRecord
    session: Session | None
    queued: int = 0
    """Runs of the session waiting their turn."""
    active: int = 0
    """Runs of the session running or waiting (at most one)."""


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    event_id: str
    message_id: str | None
    conversation_id: str | None
    status: str
    run_id: str | None
    received_at: float
    message: str | None = None
    """The normalised inbound message (JSON), kept until it is processed."""
    claimed_by: str | None = None
    claimed_at: float | None = None
    updated_at: float | None = None
    detail: str | None = None
    """How it was handled (``started``, ``queued``, ``command`` …) or why it failed."""


def _unfinished(
    stale_before: float, dead_owners: str | None, exclude_owner: str | None
) -> ColumnElement[bool]:
    """Received and not taken, or taken under a dead claim (see ``claim``)."""
    c = inbound_receipts.c
    dead: ColumnElement[bool] = c.claimed_at < stale_before
    if dead_owners is not None:
        dead = or_(dead, c.claimed_by.startswith(dead_owners, autoescape=True))
    if exclude_owner is not None:
        dead = and_(dead, c.claimed_by != exclude_owner)
    return or_(c.status == "received", and_(c.status == "processing", dead))


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- conversations -------------------------------------------------------------

    async def ensure(
        self,
        channel: str,
        chat_id: str,
        thread: str | None = None,
        *,
        kind: str = "p2p",
        lang: str | None = None,
        now: float | None = None,
    ) -> ConversationRecord:
        """The conversation, created if new; its language updated when ``lang`` is given."""
        key = conversation_key(channel, chat_id, thread)
        now = time.time() if now is None else now
        async with self.db.engine.begin() as conn:
            row = (
                await conn.execute(select(conversations).where(conversations.c.id == key))
            ).first()
            if row is None:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            insert(conversations).values(
                                id=key,
                                channel=channel,
                                chat_id=chat_id,
                                thread=thread,
                                kind=kind,
                                lang=lang,
                                created_at=now,
                                updated_at=now,
                            )
                        )
                except IntegrityError:
                    pass  # created concurrently: fine
            elif lang is not None and row.lang != lang:
                await conn.execute(
                    update(conversations)
                    .where(conversations.c.id == key)
                    .values(lang=lang, updated_at=now)
                )
            row = (await conn.execute(select(conversations).where(conversations.c.id == key))).one()
        return from_row(ConversationRecord, row)

    async def get(self, key: str) -> ConversationRecord:
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(select(conversations).where(conversations.c.id == key))
            ).first()
        if row is None:
            raise NotFound(f"no conversation {key!r}", data={"conversation": key})
        return from_row(ConversationRecord, row)

    async def view(self, key: str) -> ConversationView | None:
        """The conversation, its current session and that session's queued and active run
        counts, in one read; None if there is no such conversation."""
        queued = (
            select(func.count())
            .where(runs.c.session_id == conversations.c.session_id, runs.c.state == "queued")
            .scalar_subquery()
        )
        active = (
            select(func.count())
            .where(
                runs.c.session_id == conversations.c.session_id,
                runs.c.state.in_(["running", "waiting"]),
            )
            .scalar_subquery()
        )
        session_cols = [c.label(f"s_{c.name}") for c in sessions.c]
        query = (
            select(conversations, *session_cols, queued.label("n_queued"), active.label("n_active"))
            .select_from(
                conversations.outerjoin(sessions, sessions.c.id == conversations.c.session_id)
            )
            .where(conversations.c.id == key)
        )
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        data = row._mapping
        conversation = msgspec.convert(
            {str(c.name): data[c.name] for c in conversations.c}, ConversationRecord, strict=False
        )
        session = None
        if data["s_id"] is not None:
            session = msgspec.convert(
                {str(c.name): data[f"s_{c.name}"] for c in sessions.c}, Session, strict=False
            )
        return ConversationView(
            conversation=conversation,
            session=session,
            queued=int(data["n_queued"] or 0),
            active=int(data["n_active"] or 0),
        )

    async def recent_runs(self, since: float, limit: int = 10_000) -> list[tuple[str, str]]:
        """(run id, session id) of runs changed since ``since`` in sessions bound to a
        conversation, oldest first."""
        query = (
            select(runs.c.id, runs.c.session_id)
            .join(sessions, sessions.c.id == runs.c.session_id)
            .where(sessions.c.conversation_id.is_not(None), runs.c.updated_at >= since)
            .order_by(runs.c.id)
            .limit(limit)
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(str(r[0]), str(r[1])) for r in rows]

    async def set_session(
        self, key: str, session_id: str, *, expect: str | bool | None = False
    ) -> bool:
        """Point the conversation at ``session_id``. With ``expect`` (a session id, or None
        for "none yet"), only if it still points there (compare-and-set); True if set."""
        stmt = update(conversations).where(conversations.c.id == key)
        if expect is None:
            stmt = stmt.where(conversations.c.session_id.is_(None))
        elif expect is not False:
            stmt = stmt.where(conversations.c.session_id == expect)
        async with self.db.engine.begin() as conn:
            result = await conn.execute(stmt.values(session_id=session_id, updated_at=time.time()))
        return bool(result.rowcount)

    # ---- receipts ------------------------------------------------------------------

    async def record(
        self,
        channel: str,
        event_id: str,
        *,
        message: str,
        message_id: str | None,
        conversation_id: str | None,
        claimed_by: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Write the receipt of an inbound message; False if it is a duplicate.
        ``claimed_by``: the gateway that will process it now (it is written claimed)."""
        now = time.time() if now is None else now
        values = {
            "channel": channel,
            "event_id": event_id,
            "message_id": message_id,
            "conversation_id": conversation_id,
            "status": "received" if claimed_by is None else "processing",
            "run_id": None,
            "received_at": now,
            "message": message,
            "updated_at": now,
            "claimed_by": claimed_by,
            "claimed_at": now if claimed_by is not None else None,
        }
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(insert(inbound_receipts).values(**values))
        except IntegrityError:
            return False
        return True

    async def get_receipt(self, channel: str, event_id: str) -> Receipt:
        query = select(inbound_receipts).where(
            inbound_receipts.c.channel == channel, inbound_receipts.c.event_id == event_id
        )
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no receipt {channel}/{event_id}")
        return from_row(Receipt, row)

    async def claim(
        self,
        channel: str,
        event_id: str,
        owner: str,
        *,
        stale_before: float,
        dead_owners: str | None = None,
        exclude_owner: str | None = None,
        now: float | None = None,
    ) -> Receipt | None:
        """Take a receipt to process it: one still ``received``, or one ``processing``
        whose claim is dead: older than ``stale_before`` (its gateway went quiet), or made
        by an earlier incarnation of this gateway (``claimed_by`` starts with
        ``dead_owners``). Never one ``exclude_owner`` (this incarnation) holds. None if
        another has it, or it is done."""
        now = time.time() if now is None else now
        stmt = (
            update(inbound_receipts)
            .where(
                inbound_receipts.c.channel == channel,
                inbound_receipts.c.event_id == event_id,
                _unfinished(stale_before, dead_owners, exclude_owner),
            )
            .values(status="processing", claimed_by=owner, claimed_at=now, updated_at=now)
            .returning(*inbound_receipts.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else from_row(Receipt, row)

    async def finish(
        self,
        channel: str,
        event_id: str,
        status: str,
        *,
        detail: str | None = None,
        run_id: str | None = None,
        conversation_id: str | None = None,
    ) -> None:
        """Record how a claimed receipt was handled (its message is dropped: it is done)."""
        values: dict[str, object] = {
            "status": status,
            "detail": detail,
            "updated_at": time.time(),
            "message": None,
        }
        if run_id is not None:
            values["run_id"] = run_id
        if conversation_id is not None:
            values["conversation_id"] = conversation_id
        stmt = (
            update(inbound_receipts)
            .where(
                inbound_receipts.c.channel == channel,
                inbound_receipts.c.event_id == event_id,
                inbound_receipts.c.status == "processing",
            )
            .values(**values)
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(stmt)

    async def pending(
        self,
        *,
        stale_before: float,
        dead_owners: str | None = None,
        exclude_owner: str | None = None,
        limit: int = 500,
    ) -> list[Receipt]:
        """Receipts nobody finished, oldest first: ``received``, or ``processing`` under a
        dead claim (see :meth:`claim`)."""
        query = (
            select(inbound_receipts)
            .where(_unfinished(stale_before, dead_owners, exclude_owner))
            .order_by(inbound_receipts.c.received_at)
            .limit(limit)
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(Receipt, r) for r in rows]

    async def for_run(self, run_id: str) -> Receipt | None:
        """The receipt of the message that started ``run_id``, if a channel's did."""
        query = select(inbound_receipts).where(inbound_receipts.c.run_id == run_id).limit(1)
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else from_row(Receipt, row)
