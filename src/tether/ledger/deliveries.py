"""Outbound deliveries: every message sent to a chat, recorded before it is sent.

A delivery's ``idempotency_key`` is unique, so a message the gateway would send twice
(the same reply of the same run) is recorded, and sent, once. Its state is ``sending``
while the attempt is under way, then ``delivered`` (with the platform's message id) or
``failed`` (with the error).
"""

from __future__ import annotations

import time

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import deliveries
from tether.types import new_id

__all__ = ["DeliveryRecord", "DeliveryStore"]


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    channel: str
    conversation_id: str
    run_id: str | None
    kind: str
    content: str
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: float | None
    platform_message_id: str | None
    last_error: str | None
    created_at: float
    updated_at: float


class DeliveryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        *,
        channel: str,
        conversation_id: str,
        run_id: str | None,
        kind: str,
        content: str,
        idempotency_key: str,
    ) -> DeliveryRecord | None:
        """Record a delivery about to be sent; None if its key was recorded before."""
        now = time.time()
        values = {
            "id": new_id("dlv"),
            "channel": channel,
            "conversation_id": conversation_id,
            "run_id": run_id,
            "kind": kind,
            "content": content,
            "idempotency_key": idempotency_key,
            "state": "sending",
            "attempts": 1,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.db.engine.begin() as conn:
                row = (
                    await conn.execute(insert(deliveries).values(**values).returning(*deliveries.c))
                ).one()
        except IntegrityError:
            return None
        return from_row(DeliveryRecord, row)

    async def settle(
        self,
        delivery_id: str,
        *,
        state: str,
        platform_message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record how the attempt ended: ``delivered`` or ``failed``."""
        stmt = (
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(
                state=state,
                platform_message_id=platform_message_id,
                last_error=error,
                updated_at=time.time(),
            )
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(stmt)

    async def list(
        self, *, conversation_id: str | None = None, run_id: str | None = None, limit: int = 200
    ) -> list[DeliveryRecord]:
        """Deliveries, oldest first."""
        query = select(deliveries).order_by(deliveries.c.created_at, deliveries.c.id).limit(limit)
        if conversation_id is not None:
            query = query.where(deliveries.c.conversation_id == conversation_id)
        if run_id is not None:
            query = query.where(deliveries.c.run_id == run_id)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(DeliveryRecord, r) for r in rows]
