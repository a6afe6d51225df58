"""Enrolled machines: their codes, credential hashes, status and what they offer."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.errors import Conflict, NotFound
from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import runners
from tether.types import new_id

__all__ = ["RunnerRecord", "RunnerStore"]


class RunnerRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    status: str
    credential_hash: str | None
    enrol_code_hash: str | None
    enrol_expires_at: float | None
    version: str | None
    info: str
    created_at: float
    enrolled_at: float | None
    revoked_at: float | None
    last_seen_at: float | None

    def offered(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.json.decode(self.info or "{}")
        return data


class RunnerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        name: str,
        *,
        code_hash: str,
        expires_at: float,
        rotate: bool = False,
        now: float | None = None,
    ) -> RunnerRecord:
        """Create a pending runner with an enrolment code (or, with ``rotate``, reset one)."""
        now = time.time() if now is None else now
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(select(runners).where(runners.c.name == name))).first()
            if row is not None:
                if not rotate and row.status != "pending":
                    raise Conflict(
                        f"runner {name!r} already exists ({row.status}); use --rotate to enrol it again",
                        data={"name": name, "status": row.status},
                    )
                stmt = (
                    update(runners)
                    .where(runners.c.id == row.id)
                    .values(
                        status="pending",
                        credential_hash=None,
                        enrol_code_hash=code_hash,
                        enrol_expires_at=expires_at,
                        revoked_at=None,
                    )
                    .returning(*runners.c)
                )
                return from_row(RunnerRecord, (await conn.execute(stmt)).one())
            values = {
                "id": new_id("rnr"),
                "name": name,
                "status": "pending",
                "enrol_code_hash": code_hash,
                "enrol_expires_at": expires_at,
                "info": "{}",
                "created_at": now,
            }
            try:
                created = (
                    await conn.execute(insert(runners).values(**values).returning(*runners.c))
                ).one()
            except IntegrityError as exc:
                raise Conflict(f"runner {name!r} was created concurrently") from exc
        return from_row(RunnerRecord, created)

    async def enroll(
        self, code_hash: str, credential_hash: str, *, now: float | None = None
    ) -> RunnerRecord | None:
        """Consume an enrolment code (once, before it expires); None when it is not valid."""
        now = time.time() if now is None else now
        # a wrong code (the common case under guessing) costs a read, not a write
        probe = select(runners.c.id).where(
            runners.c.enrol_code_hash == code_hash,
            runners.c.status == "pending",
            runners.c.enrol_expires_at >= now,
        )
        async with self.db.reader.connect() as conn:
            if (await conn.execute(probe)).first() is None:
                return None
        stmt = (
            update(runners)
            .where(
                runners.c.enrol_code_hash == code_hash,
                runners.c.status == "pending",
                runners.c.enrol_expires_at >= now,
            )
            .values(
                status="enrolled",
                credential_hash=credential_hash,
                enrol_code_hash=None,
                enrol_expires_at=None,
                enrolled_at=now,
            )
            .returning(*runners.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return from_row(RunnerRecord, row) if row is not None else None

    async def get(self, runner_id: str) -> RunnerRecord:
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(select(runners).where(runners.c.id == runner_id))).first()
        if row is None:
            raise NotFound(f"runner {runner_id} does not exist")
        return from_row(RunnerRecord, row)

    async def find(self, name_or_id: str) -> RunnerRecord:
        query = select(runners).where((runners.c.name == name_or_id) | (runners.c.id == name_or_id))
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no runner named {name_or_id!r}", data={"runner": name_or_id})
        return from_row(RunnerRecord, row)

    async def list(self) -> list[RunnerRecord]:
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(select(runners).order_by(runners.c.name))).all()
        return [from_row(RunnerRecord, r) for r in rows]

    async def revoke(self, name_or_id: str, *, now: float | None = None) -> RunnerRecord:
        now = time.time() if now is None else now
        record = await self.find(name_or_id)
        stmt = (
            update(runners)
            .where(runners.c.id == record.id)
            .values(status="revoked", credential_hash=None, enrol_code_hash=None, revoked_at=now)
            .returning(*runners.c)
        )
        async with self.db.engine.begin() as conn:
            return from_row(RunnerRecord, (await conn.execute(stmt)).one())

    async def seen(
        self,
        runner_id: str,
        *,
        version: str | None = None,
        info: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        """Record that the runner is alive (and, at registration, what it offers)."""
        values: dict[str, Any] = {"last_seen_at": time.time() if now is None else now}
        if version is not None:
            values["version"] = version
        if info is not None:
            values["info"] = msgspec.json.encode(info).decode()
        async with self.db.engine.begin() as conn:
            await conn.execute(update(runners).where(runners.c.id == runner_id).values(**values))
