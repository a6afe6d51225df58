"""Routines: durable cron schedules, each starting runs in one session as its owner.

The scheduler reads the routines that are due, records each firing as an inbound receipt
(its duplicate key makes a second attempt harmless), then moves ``next_fire_at`` on with
:meth:`RoutineStore.advance`, a compare-and-set on the due time it fired: of two gateways
that fire the same due time, one advances and the other finds it moved.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.errors import Conflict, NotFound
from tether.ledger.engine import Database
from tether.ledger.records import RoutineRecord, from_row
from tether.ledger.schema import routines
from tether.types import new_id

__all__ = ["RoutineStore"]

_DEFINITION = frozenset({"owner", "session_id", "cron", "tz", "input", "catch_up"})


class RoutineStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        *,
        name: str,
        owner: str,
        session_id: str,
        cron: str,
        tz: str,
        input: str,
        catch_up: str,
        next_fire_at: float,
        source: str = "cli",
        state: str = "active",
        now: float | None = None,
    ) -> RoutineRecord:
        """Record a routine; :class:`Conflict` if one by that name exists."""
        now = time.time() if now is None else now
        values = {
            "id": new_id("rtn"),
            "name": name,
            "owner": owner,
            "session_id": session_id,
            "cron": cron,
            "tz": tz,
            "input": input,
            "state": state,
            "catch_up": catch_up,
            "next_fire_at": next_fire_at,
            "last_fired_at": None,
            "last_run_id": None,
            "source": source,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.db.engine.begin() as conn:
                row = (
                    await conn.execute(insert(routines).values(**values).returning(*routines.c))
                ).one()
        except IntegrityError as exc:
            raise Conflict(
                f"a routine called {name!r} already exists", data={"name": name}
            ) from exc
        return from_row(RoutineRecord, row)

    async def get(self, routine_id: str) -> RoutineRecord:
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(select(routines).where(routines.c.id == routine_id))).first()
        if row is None:
            raise NotFound(f"no routine {routine_id!r}", data={"routine": routine_id})
        return from_row(RoutineRecord, row)

    async def find(self, ref: str) -> RoutineRecord:
        """By name or id."""
        query = select(routines).where((routines.c.name == ref) | (routines.c.id == ref))
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no routine {ref!r}", data={"routine": ref})
        return from_row(RoutineRecord, row)

    async def due(self, now: float, *, limit: int = 100) -> list[RoutineRecord]:
        """Active routines whose next due time has come, soonest first."""
        query = (
            select(routines)
            .where(routines.c.state == "active", routines.c.next_fire_at <= now)
            .order_by(routines.c.next_fire_at, routines.c.id)
            .limit(limit)
        )
        async with self.db.engine.connect() as conn:  # the writer's view: fresh after a CAS
            rows = (await conn.execute(query)).all()
        return [from_row(RoutineRecord, r) for r in rows]

    async def next_due(self) -> float | None:
        """The soonest due time of an active routine, if any."""
        query = select(func.min(routines.c.next_fire_at)).where(routines.c.state == "active")
        async with self.db.engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return None if value is None else float(value)

    async def advance(
        self,
        routine_id: str,
        *,
        expect: float,
        next_fire_at: float,
        fired_at: float | None = None,
        run_id: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Move an active routine's due time from ``expect`` to ``next_fire_at`` (recording
        the firing when ``fired_at`` is given); False if it was not due at ``expect`` any
        more (another gateway moved it, or it was paused, changed or removed)."""
        now = time.time() if now is None else now
        values: dict[str, Any] = {"next_fire_at": next_fire_at, "updated_at": now}
        if fired_at is not None:
            values["last_fired_at"] = fired_at
            values["last_run_id"] = run_id
        stmt = (
            update(routines)
            .where(
                routines.c.id == routine_id,
                routines.c.state == "active",
                routines.c.next_fire_at == expect,
            )
            .values(**values)
        )
        async with self.db.engine.begin() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def set_state(
        self, routine_id: str, state: str, *, next_fire_at: float | None, now: float | None = None
    ) -> RoutineRecord:
        """Pause (``next_fire_at`` None) or resume a routine."""
        now = time.time() if now is None else now
        stmt = (
            update(routines)
            .where(routines.c.id == routine_id)
            .values(state=state, next_fire_at=next_fire_at, updated_at=now)
            .returning(*routines.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise NotFound(f"no routine {routine_id!r}", data={"routine": routine_id})
        return from_row(RoutineRecord, row)

    async def redefine(
        self,
        routine_id: str,
        *,
        next_fire_at: float | None,
        now: float | None = None,
        **fields: Any,
    ) -> RoutineRecord:
        """Change what a routine is (owner, session, cron, tz, input, catch-up) and when it
        is next due (its state and history stay)."""
        unknown = set(fields) - _DEFINITION
        if unknown:
            raise ValueError(f"not a routine's definition: {sorted(unknown)}")
        now = time.time() if now is None else now
        stmt = (
            update(routines)
            .where(routines.c.id == routine_id)
            .values(**fields, next_fire_at=next_fire_at, updated_at=now)
            .returning(*routines.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise NotFound(f"no routine {routine_id!r}", data={"routine": routine_id})
        return from_row(RoutineRecord, row)

    async def remove(self, routine_id: str) -> bool:
        async with self.db.engine.begin() as conn:
            result = await conn.execute(delete(routines).where(routines.c.id == routine_id))
        return bool(result.rowcount)

    async def list(
        self,
        *,
        owner: str | None = None,
        session_id: str | None = None,
        source: str | None = None,
        limit: int = 500,
    ) -> list[RoutineRecord]:
        """Routines by name."""
        query = select(routines).order_by(routines.c.name).limit(limit)
        if owner is not None:
            query = query.where(routines.c.owner == owner)
        if session_id is not None:
            query = query.where(routines.c.session_id == session_id)
        if source is not None:
            query = query.where(routines.c.source == source)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(RoutineRecord, r) for r in rows]
