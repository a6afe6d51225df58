"""The outbox: every message owed to a chat, recorded before it is sent.

A delivery's ``idempotency_key`` is unique, so the same message (the same event of the
same run) is recorded, and sent, once. States:

- ``pending``: to send when ``next_attempt_at`` comes;
- ``sending``: leased by one gateway (``lease_owner`` until ``lease_expires_at``); a
  lease that expires (its gateway died mid-send) makes it claimable again;
- ``delivered`` (with the platform's message id), ``dead`` (a permanent error, or it gave
  up after its attempts) or ``superseded`` (a status edit a newer one replaced).

Order is kept per conversation: only a conversation's oldest unfinished delivery may be
claimed (its head of line), so a failing one holds back its own conversation and no
other. A run's status message is a chain of deliveries with ``status_of`` set: the first
creates the message, the rest edit it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec
from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import deliveries
from tether.types import new_id

__all__ = ["DeliveryRecord", "DeliveryStore"]

UNFINISHED = ("pending", "sending")


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    channel: str
    conversation_id: str
    run_id: str | None
    kind: str
    content: str
    """The delivery as JSON (what is sent, and where)."""
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: float | None
    platform_message_id: str | None
    last_error: str | None
    created_at: float
    updated_at: float
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    status_of: str | None = None


class DeliveryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(
        self,
        *,
        channel: str,
        conversation_id: str,
        run_id: str | None,
        kind: str,
        content: str,
        idempotency_key: str,
        status_of: str | None = None,
        now: float | None = None,
    ) -> DeliveryRecord | None:
        """Record a delivery to send now; None if its key was recorded before."""
        now = time.time() if now is None else now
        values = {
            "id": new_id("dlv"),
            "channel": channel,
            "conversation_id": conversation_id,
            "run_id": run_id,
            "kind": kind,
            "content": content,
            "idempotency_key": idempotency_key,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
            "status_of": status_of,
        }
        try:
            async with self.db.engine.begin() as conn:
                row = (
                    await conn.execute(insert(deliveries).values(**values).returning(*deliveries.c))
                ).one()
        except IntegrityError:
            return None
        return from_row(DeliveryRecord, row)

    async def claim(
        self, owner: str, *, lease: float, limit: int, now: float | None = None
    ) -> list[DeliveryRecord]:
        """Lease up to ``limit`` due deliveries, each the head of its conversation's line."""
        now = time.time() if now is None else now
        older = deliveries.alias("older")
        blocked = exists(
            select(older.c.id).where(
                older.c.conversation_id == deliveries.c.conversation_id,
                older.c.id < deliveries.c.id,
                older.c.state.in_(UNFINISHED),
            )
        )
        due = or_(
            and_(deliveries.c.state == "pending", deliveries.c.next_attempt_at <= now),
            and_(deliveries.c.state == "sending", deliveries.c.lease_expires_at < now),
        )
        candidates = (
            select(deliveries.c.id, deliveries.c.state)
            .where(due, ~blocked)
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
        )
        out: list[DeliveryRecord] = []
        async with self.db.engine.begin() as conn:
            for delivery_id, state in (await conn.execute(candidates)).all():
                take = (
                    update(deliveries)
                    .where(deliveries.c.id == delivery_id, deliveries.c.state == state)
                    .values(
                        state="sending",
                        lease_owner=owner,
                        lease_expires_at=now + lease,
                        updated_at=now,
                    )
                    .returning(*deliveries.c)
                )
                if state == "sending":
                    take = take.where(deliveries.c.lease_expires_at < now)
                row = (await conn.execute(take)).first()
                if row is not None:
                    out.append(from_row(DeliveryRecord, row))
        return out

    async def settle(
        self,
        delivery_id: str,
        owner: str,
        *,
        state: str,
        platform_message_id: str | None = None,
        error: str | None = None,
        retry_at: float | None = None,
        counts: bool = True,
    ) -> bool:
        """End a leased attempt: ``delivered``, ``dead``, ``superseded``, or ``pending``
        again at ``retry_at``. False if the lease was lost (another gateway has it)."""
        now = time.time()
        values: dict[str, object] = {
            "state": state,
            "last_error": error,
            "updated_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if counts:
            values["attempts"] = deliveries.c.attempts + 1
        if platform_message_id is not None:
            values["platform_message_id"] = platform_message_id
        if state == "pending":
            values["next_attempt_at"] = retry_at if retry_at is not None else now
        stmt = (
            update(deliveries)
            .where(
                deliveries.c.id == delivery_id,
                deliveries.c.state == "sending",
                deliveries.c.lease_owner == owner,
            )
            .values(**values)
        )
        async with self.db.engine.begin() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def next_due(self) -> float | None:
        """When the soonest pending delivery (or lease) is due, if any."""
        query = select(
            func.min(deliveries.c.next_attempt_at).filter(deliveries.c.state == "pending"),
            func.min(deliveries.c.lease_expires_at).filter(deliveries.c.state == "sending"),
        )
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).one()
        times = [t for t in row if t is not None]
        return min(times) if times else None

    async def status_message(self, run_id: str) -> tuple[str, float] | None:
        """The platform message a run's status lives in (its first status delivered) and
        when a status of the run was last delivered; None before the first."""
        delivered = and_(
            deliveries.c.status_of == run_id,
            deliveries.c.state == "delivered",
            deliveries.c.platform_message_id.is_not(None),
        )
        first = (
            select(deliveries.c.platform_message_id)
            .where(delivered)
            .order_by(deliveries.c.id)
            .limit(1)
        )
        latest = select(func.max(deliveries.c.updated_at)).where(delivered)
        async with self.db.reader.connect() as conn:
            message = (await conn.execute(first)).scalar()
            if message is None:
                return None
            at = (await conn.execute(latest)).scalar()
        return str(message), float(at or 0.0)

    async def requests_shown(self, run_id: str) -> list[tuple[str, str]]:
        """``(platform message id, content)`` of each request of the run that was
        delivered (where a channel with cards shows it), oldest first."""
        query = (
            select(deliveries.c.platform_message_id, deliveries.c.content)
            .where(
                deliveries.c.run_id == run_id,
                deliveries.c.kind == "request",
                deliveries.c.state == "delivered",
                deliveries.c.platform_message_id.is_not(None),
            )
            .order_by(deliveries.c.id)
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(str(r[0]), str(r[1])) for r in rows]

    async def newer_status(self, run_id: str, delivery_id: str) -> bool:
        """Whether a later status of the run waits (this one is then out of date)."""
        query = select(
            exists(
                select(deliveries.c.id).where(
                    deliveries.c.status_of == run_id,
                    deliveries.c.id > delivery_id,
                    deliveries.c.state.in_(UNFINISHED),
                )
            )
        )
        async with self.db.reader.connect() as conn:
            return bool((await conn.execute(query)).scalar())

    async def list(
        self,
        *,
        conversation_id: str | None = None,
        run_id: str | None = None,
        states: Sequence[str] | None = None,
        limit: int = 200,
    ) -> list[DeliveryRecord]:
        """Deliveries, oldest first."""
        query = select(deliveries).order_by(deliveries.c.id).limit(limit)
        if conversation_id is not None:
            query = query.where(deliveries.c.conversation_id == conversation_id)
        if run_id is not None:
            query = query.where(deliveries.c.run_id == run_id)
        if states:
            query = query.where(deliveries.c.state.in_(list(states)))
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(DeliveryRecord, r) for r in rows]
