"""Retention: remove expired artifacts and the events of runs finished long ago."""

from __future__ import annotations

import time

import msgspec
from sqlalchemy import delete, select

from tether.ledger.engine import Database
from tether.ledger.schema import artifacts, run_events, runs
from tether.ledger.states import TERMINAL

__all__ = ["PurgeResult", "purge"]


class PurgeResult(msgspec.Struct, frozen=True):
    artifacts: int
    events: int


async def purge(
    db: Database,
    *,
    event_retention: float,
    artifact_retention: float,
    now: float | None = None,
) -> PurgeResult:
    """Delete artifacts past their expiry or older than ``artifact_retention`` seconds and
    owned by a finished run, and events of runs finished more than ``event_retention``
    seconds ago. Active runs are never touched."""
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
    return PurgeResult(artifacts=int(gone_artifacts or 0), events=int(gone_events or 0))
