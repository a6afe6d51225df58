"""Run events: append through group commit, read back by (run, seq) or by session.

Payloads larger than ``inline_payload_bytes`` are stored as artifacts and the event
carries ``{"artifact": id, "size": n, "media_type": t}`` instead, so event rows stay
small; :meth:`EventStore.full_payload` turns such a reference back into the payload.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import Row, and_, func, insert, or_, select

from tether.errors import NotFound
from tether.ledger.engine import Database
from tether.ledger.records import Artifact, Event, NewEvent, from_row
from tether.ledger.schema import artifacts, run_events, runs
from tether.ledger.writer import EventRow, EventWriter
from tether.types import new_id

__all__ = ["EventStore"]

_encode = msgspec.json.Encoder().encode


def derived_artifact_id(seed: bytes) -> str:
    """An artifact id that follows from ``seed``: storing what the same seed names again
    finds the artifact already there (:meth:`EventStore.put_artifact` writes nothing)."""
    return "art_" + base64.b32encode(hashlib.sha256(seed).digest()).decode()[:26]


_COLUMNS = (
    run_events.c.run_id,
    run_events.c.seq,
    run_events.c.kind,
    run_events.c.source,
    run_events.c.payload,
    run_events.c.created_at,
    run_events.c.epoch,
    run_events.c.origin,
)


def _event(row: Row[Any, Any, Any, Any, Any, Any, Any, Any]) -> Event:
    run_id, seq, kind, source, payload, created_at, epoch, origin = row
    return Event(
        run_id=run_id,
        seq=seq,
        kind=kind,
        source=source,
        payload=payload,
        created_at=created_at,
        epoch=epoch,
        origin=origin,
    )


class EventStore:
    """Append and read run events."""

    def __init__(self, db: Database, writer: EventWriter, *, inline_payload_bytes: int) -> None:
        self.db = db
        self.writer = writer
        self.inline_payload_bytes = inline_payload_bytes

    async def append(
        self, run_id: str, epoch: int, events: Sequence[NewEvent]
    ) -> Sequence[NewEvent]:
        """Commit events (returns after the commit). Returns them as stored (large payloads
        replaced by artifact references). Identical re-appends are no-ops; different
        content at an existing seq raises Conflict."""
        stored = [await self.offload(run_id, e) for e in events]
        rows: list[EventRow] = [
            (run_id, e.seq, e.kind, e.source, e.payload, e.created_at, epoch, e.origin)
            for e in stored
        ]
        await self.writer.append(rows)
        return stored

    async def offload(self, run_id: str, event: NewEvent) -> NewEvent:
        """The event as stored: a payload over the inline limit moved into an artifact and
        replaced by a reference (every event row stays small, whichever path writes it)."""
        if len(event.payload) * 4 <= self.inline_payload_bytes:
            return event  # 4 bytes per character is the UTF-8 worst case
        size = len(event.payload.encode())
        if size <= self.inline_payload_bytes:
            return event
        content = event.payload.encode()
        # the id follows from (run, seq, content): re-appending the same event yields the
        # same reference, so it stays a no-op like any identical re-append
        seed = f"{run_id}\0{event.seq}\0".encode() + content
        artifact_id = await self.put_artifact(
            run_id=run_id,
            name=f"{event.kind}#{event.seq}",
            media_type="application/json",
            content=content,
            artifact_id=derived_artifact_id(seed),
        )
        ref = _encode(
            {"artifact": artifact_id, "size": size, "media_type": "application/json"}
        ).decode()
        return msgspec.structs.replace(event, payload=ref)

    async def read(self, run_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        query = (
            select(*_COLUMNS)
            .where(run_events.c.run_id == run_id, run_events.c.seq > after_seq)
            .order_by(run_events.c.seq)
            .limit(limit)
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_event(r) for r in rows]

    async def read_runs(self, run_ids: Sequence[str], *, limit: int = 5000) -> list[Event]:
        """The events of several runs in one query, in (run id, seq) order (run ids sort
        by creation), at most ``limit`` in all."""
        if not run_ids:
            return []
        query = (
            select(*_COLUMNS)
            .where(run_events.c.run_id.in_(list(run_ids)))
            .order_by(run_events.c.run_id, run_events.c.seq)
            .limit(limit)
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_event(r) for r in rows]

    async def last_origin(self, run_id: str) -> int:
        """The highest hosted-agent event number recorded for the run (0: none)."""
        async with self.db.reader.connect() as conn:
            value = (
                await conn.execute(
                    select(func.max(run_events.c.origin)).where(run_events.c.run_id == run_id)
                )
            ).scalar()
        return int(value or 0)

    async def last_seq(self, run_id: str) -> int:
        async with self.db.reader.connect() as conn:
            value = (
                await conn.execute(
                    select(func.max(run_events.c.seq)).where(run_events.c.run_id == run_id)
                )
            ).scalar()
        return int(value or 0)

    async def read_session(
        self,
        session_id: str,
        *,
        after_run: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[Event]:
        """Events of a session's runs in (run id, seq) order, after the cursor (run, seq)."""
        query = (
            select(*_COLUMNS)
            .join(runs, runs.c.id == run_events.c.run_id)
            .where(runs.c.session_id == session_id)
            .order_by(run_events.c.run_id, run_events.c.seq)
            .limit(limit)
        )
        if after_run is not None:
            query = query.where(
                or_(
                    run_events.c.run_id > after_run,
                    and_(run_events.c.run_id == after_run, run_events.c.seq > after_seq),
                )
            )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_event(r) for r in rows]

    async def put_artifact(
        self,
        *,
        run_id: str | None,
        name: str,
        media_type: str,
        content: bytes,
        ttl: float | None = None,
        now: float | None = None,
        artifact_id: str | None = None,
    ) -> str:
        """Store an artifact; returns its id. With ``artifact_id`` given and already
        stored, nothing is written (callers derive such ids from the content)."""
        now = time.time() if now is None else now
        if artifact_id is None:
            artifact_id = new_id("art")
        else:
            async with self.db.reader.connect() as conn:
                found = await conn.execute(
                    select(artifacts.c.id).where(artifacts.c.id == artifact_id)
                )
                if found.first() is not None:
                    return artifact_id
        async with self.db.engine.begin() as conn:
            await conn.execute(
                insert(artifacts).values(
                    id=artifact_id,
                    run_id=run_id,
                    name=name,
                    media_type=media_type,
                    size=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    content=content,
                    created_at=now,
                    expires_at=None if ttl is None else now + ttl,
                )
            )
        return artifact_id

    async def full_payload(self, event: Event) -> str:
        """The event's payload, with an artifact reference (see the module docstring)
        replaced by the payload it stands for."""
        if not event.payload.startswith('{"artifact":'):
            return event.payload
        ref = msgspec.json.decode(event.payload)
        if not isinstance(ref, dict) or set(ref) != {"artifact", "size", "media_type"}:
            return event.payload
        return (await self.get_artifact(str(ref["artifact"]))).content.decode()

    async def get_artifact(self, artifact_id: str) -> Artifact:
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(select(artifacts).where(artifacts.c.id == artifact_id))
            ).first()
        if row is None:
            raise NotFound(f"artifact {artifact_id} does not exist")
        return from_row(Artifact, row)
