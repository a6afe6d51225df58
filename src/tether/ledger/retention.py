"""Retention: remove expired artifacts, the events of runs finished long ago, and the
receipts and deliveries of conversations older than the events."""

from __future__ import annotations

import time

import msgspec
from sqlalchemy import delete, select

from tether.ledger.engine import Database
from tether.ledger.schema import artifacts, deliveries, inbound_receipts, run_events, runs
from tether.ledger.states import TERMINAL

__all__ = ["PurgeResult", "purge"]


class PurgeResult(msgspec.Struct, frozen=True):
    artifacts: int
    events: int
    receipts: int = 0
    deliveries: int = 0


async def purge(
    db: Database,
    *,
    event_retention: float,
    artifact_retention: float,
    now: float | None = None,
) -> PurgeResult:
    """Delete artifacts past their expiry or older than ``artifact_retention`` seconds and
    owned by a finished run, and events of runs finished more than ``event_retention``
    seconds ago, and receipts and deliveries older than that which are settled (a receipt
    still to process, or a delivery being sent, is kept). Active runs are never touched."""
    now = time.time() if now is None else now
    finished = [s.value for s in TERMINAL]
    old_runs = select(runs.c.id).where(
        runs.c.state.in_(finished), runs.c.finished_at < now - event_retention
    )
    finished_runs = select(runs.c.id).where(
        runs.c.state.in_(finished), runs.c.finished_at < now - artifact_retention
    )
    async with db.engine.begin() as conn:
        gone_artifacts = (
            await conn.execute(
                delete(artifacts).where(
                    (artifacts.c.expires_at < now) | artifacts.c.run_id.in_(finished_runs)
                )
            )
        ).rowcount
        gone_events = (
            await conn.execute(delete(run_events).where(run_events.c.run_id.in_(old_runs)))
        ).rowcount
        cutoff = now - event_retention
        gone_receipts = (
            await conn.execute(
                delete(inbound_receipts).where(
                    inbound_receipts.c.received_at < cutoff,
                    inbound_receipts.c.status.not_in(["received", "processing"]),
                )
            )
        ).rowcount
        gone_deliveries = (
            await conn.execute(
                delete(deliveries).where(
                    deliveries.c.created_at < cutoff,
                    deliveries.c.state.not_in(["pending", "sending"]),
                )
            )
        ).rowcount
    return PurgeResult(
        artifacts=int(gone_artifacts or 0),
        events=int(gone_events or 0),
        receipts=int(gone_receipts or 0),
        deliveries=int(gone_deliveries or 0),
    )
