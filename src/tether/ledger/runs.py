"""Runs and their leases. Every write is one conditional UPDATE (compare-and-set).

A lease is (owner, expiry, epoch). ``claim_next`` moves the oldest claimable queued run
to ``running`` with epoch+1; ``renew`` and ``release`` require the same owner and epoch;
``transition`` requires the caller's epoch and a legal current state. A gateway whose
CAS finds nothing has lost the run and must stop touching it (fencing). ``reclaim``
takes over an active run whose lease expired (or whose owner is a dead incarnation of
this gateway), bumping the epoch so the old owner's writes fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from tether.errors import Conflict, NotFound
from tether.ledger.engine import Database
from tether.ledger.records import NewEvent, Run, from_row
from tether.ledger.schema import ACTIVE_STATES, inbound_receipts, run_events, runs, sessions
from tether.ledger.states import TERMINAL, TRANSITIONS, check_transition
from tether.ledger.writer import EventWriter, Op
from tether.types import RunState, new_id

__all__ = ["RunStore", "insert_event"]


async def insert_event(conn: AsyncConnection, run_id: str, event: NewEvent, epoch: int) -> None:
    """Insert one event inside the caller's transaction."""
    await conn.execute(
        insert(run_events).values(
            run_id=run_id,
            seq=event.seq,
            kind=event.kind,
            source=event.source,
            payload=event.payload,
            created_at=event.created_at,
            epoch=epoch,
            origin=event.origin,
        )
    )


def _active() -> ColumnElement[bool]:
    return runs.c.state.in_(ACTIVE_STATES)


def _stale(now: float, dead_owners: str | None, alive_owner: str) -> ColumnElement[bool]:
    """Unowned, lease expired, or owned by a dead incarnation (owner prefix) other than us."""
    stale = or_(
        runs.c.owner.is_(None), runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now
    )
    if dead_owners is None:
        return stale
    dead = and_(runs.c.owner.startswith(dead_owners, autoescape=True), runs.c.owner != alive_owner)
    return or_(stale, dead)


class RunStore:
    """Domain operations on runs."""

    def __init__(self, db: Database, writer: EventWriter) -> None:
        self.db = db
        self.writer = writer

    async def create(
        self,
        *,
        session_id: str,
        agent: str,
        input: str,
        created_by: str | None,
        event: NewEvent,
        now: float | None = None,
        run_id: str | None = None,
        receipt: tuple[str, str] | None = None,
        detail: str | None = None,
    ) -> Run:
        """Insert a queued run and its first event (seq 1) in one transaction (``run_id``:
        chosen by the caller, else a new one). ``receipt``: the (channel, event id) of the
        message that started it, marked ``done`` with it in the same transaction, so a
        message is never turned into two runs."""
        now = time.time() if now is None else now
        run_id = run_id or new_id("run")
        values = {
            "id": run_id,
            "session_id": session_id,
            "agent": agent,
            "state": RunState.QUEUED.value,
            "input": input,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "epoch": 0,
            "attempts": 0,
        }
        try:
            async with self.db.engine.begin() as conn:
                row = (await conn.execute(insert(runs).values(**values).returning(*runs.c))).one()
                await insert_event(conn, run_id, event, 0)
                if receipt is not None:
                    await conn.execute(
                        update(inbound_receipts)
                        .where(
                            inbound_receipts.c.channel == receipt[0],
                            inbound_receipts.c.event_id == receipt[1],
                        )
                        .values(
                            status="done",
                            run_id=run_id,
                            detail=detail,
                            message=None,
                            updated_at=now,
                        )
                    )
        except IntegrityError as exc:
            raise NotFound(f"session {session_id} does not exist") from exc
        return from_row(Run, row)

    async def get(self, run_id: str) -> Run:
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id))).first()
        if row is None:
            raise NotFound(f"run {run_id} does not exist", data={"run_id": run_id})
        return from_row(Run, row)

    async def list(
        self,
        *,
        session_id: str | None = None,
        states: Iterable[str] | None = None,
        before: str | None = None,
        limit: int = 50,
        owner: str | None = None,
    ) -> tuple[list[Run], str | None]:
        """Newest first; pass the returned cursor as ``before`` for the next page.
        ``owner``: only runs of sessions that principal created."""
        query = select(runs).order_by(runs.c.id.desc()).limit(limit + 1)
        if session_id is not None:
            query = query.where(runs.c.session_id == session_id)
        if owner is not None:
            mine = select(sessions.c.id).where(sessions.c.created_by == owner)
            query = query.where(runs.c.session_id.in_(mine))
        if states:
            query = query.where(runs.c.state.in_(list(states)))
        if before is not None:
            query = query.where(runs.c.id < before)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [from_row(Run, r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit else None)

    async def claim_next(
        self, owner: str, lease_seconds: float, *, now: float | None = None
    ) -> Run | None:
        """Claim the oldest queued run whose session has no active or earlier queued run."""
        now = time.time() if now is None else now
        other = runs.alias("other")
        candidate = (
            select(runs.c.id)
            .where(
                runs.c.state == RunState.QUEUED.value,
                ~exists().where(
                    other.c.session_id == runs.c.session_id,
                    or_(
                        other.c.state.in_(ACTIVE_STATES),
                        and_(other.c.state == RunState.QUEUED.value, other.c.id < runs.c.id),
                    ),
                ),
            )
            .order_by(runs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            update(runs)
            .where(runs.c.id == candidate, runs.c.state == RunState.QUEUED.value)
            .values(
                state=RunState.RUNNING.value,
                owner=owner,
                lease_expires_at=now + lease_seconds,
                epoch=runs.c.epoch + 1,
                attempts=runs.c.attempts + 1,
                started_at=func.coalesce(runs.c.started_at, now),
                updated_at=now,
            )
            .returning(*runs.c)
        )
        try:
            async with self.db.engine.begin() as conn:
                row = (await conn.execute(stmt)).first()
        except IntegrityError:
            return None  # another claimer activated a run of the same session first
        return from_row(Run, row) if row is not None else None

    async def renew(
        self, run_id: str, owner: str, epoch: int, lease_seconds: float, *, now: float | None = None
    ) -> Run:
        """Extend the lease; Conflict means the lease is lost and the caller must stop."""
        now = time.time() if now is None else now
        stmt = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.owner == owner, runs.c.epoch == epoch, _active())
            .values(lease_expires_at=now + lease_seconds, updated_at=now)
            .returning(*runs.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise Conflict(f"lease on run {run_id} lost (epoch {epoch})", data={"run_id": run_id})
        return from_row(Run, row)

    async def release(
        self, run_id: str, owner: str, epoch: int, *, now: float | None = None
    ) -> bool:
        """Give the lease up (the run stays active for another owner to reclaim at once)."""
        now = time.time() if now is None else now
        stmt = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.owner == owner, runs.c.epoch == epoch, _active())
            .values(owner=None, lease_expires_at=None, updated_at=now)
        )
        async with self.db.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def transition(
        self,
        run_id: str,
        *,
        epoch: int,
        to: RunState,
        reason: str | None = None,
        output: str | None = None,
        event: NewEvent | None = None,
        now: float | None = None,
    ) -> Run:
        """CAS the state (and record its event in the same transaction)."""
        now = time.time() if now is None else now
        legal_from = [s.value for s, nxt in TRANSITIONS.items() if to in nxt]
        values: dict[str, Any] = {"state": to.value, "updated_at": now}
        if reason is not None:
            values["reason"] = reason
        if output is not None:
            values["output"] = output
        if to in TERMINAL:
            values.update(finished_at=now, owner=None, lease_expires_at=None)
        stmt = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.epoch == epoch, runs.c.state.in_(legal_from))
            .values(**values)
            .returning(*runs.c)
        )
        async with self.db.engine.begin() as conn:
            try:
                row = (await conn.execute(stmt)).first()
            except IntegrityError as exc:
                raise Conflict(
                    f"run {run_id} cannot become {to.value}: its session already has an active run",
                    data={"run_id": run_id},
                ) from exc
            if row is None:
                await self._explain(conn, run_id, epoch, to)
            assert row is not None
            if event is not None:
                try:
                    await insert_event(conn, run_id, event, epoch)
                except IntegrityError as exc:
                    raise Conflict(
                        f"run {run_id} already has an event at seq {event.seq}",
                        data={"run_id": run_id, "seq": event.seq},
                    ) from exc
        return from_row(Run, row)

    async def _explain(self, conn: AsyncConnection, run_id: str, epoch: int, to: RunState) -> None:
        current = (
            await conn.execute(select(runs.c.state, runs.c.epoch).where(runs.c.id == run_id))
        ).first()
        if current is None:
            raise NotFound(f"run {run_id} does not exist", data={"run_id": run_id})
        if current.epoch != epoch:
            raise Conflict(
                f"run {run_id} is held at epoch {current.epoch}, not {epoch} (lease lost)",
                data={"run_id": run_id, "epoch": current.epoch},
            )
        check_transition(RunState(current.state), to)
        raise Conflict(f"run {run_id} changed concurrently", data={"run_id": run_id})

    async def reclaimable(
        self,
        *,
        now: float | None = None,
        dead_owners: str | None = None,
        exclude_owner: str = "",
        limit: int = 100,
    ) -> Sequence[Run]:
        """Active runs whose lease expired or is unowned, or held by a dead incarnation (prefix)."""
        now = time.time() if now is None else now
        stale = _stale(now, dead_owners, exclude_owner)
        query = select(runs).where(_active(), stale).order_by(runs.c.id).limit(limit)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(Run, r) for r in rows]

    async def reclaim(
        self,
        run_id: str,
        *,
        epoch: int,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
        dead_owners: str | None = None,
    ) -> Run | None:
        """Take over a stale active run (epoch+1, attempts+1); None if someone else did."""
        now = time.time() if now is None else now
        stale = _stale(now, dead_owners, owner)
        stmt = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.epoch == epoch, _active(), stale)
            .values(
                owner=owner,
                lease_expires_at=now + lease_seconds,
                epoch=runs.c.epoch + 1,
                attempts=runs.c.attempts + 1,
                updated_at=now,
            )
            .returning(*runs.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return from_row(Run, row) if row is not None else None

    async def authorize(self, run_id: str, epoch: int, authorization: str) -> None:
        """Store a run's authorization once (by the owner of ``epoch``; later calls and
        stale owners change nothing). Rides the event writer's group commit."""
        params = {"run_id": run_id, "epoch": epoch, "authorization": authorization}
        await self.writer.apply([Op("run.authorize", params)])

    async def request_cancel(self, run_id: str, *, now: float | None = None) -> Run:
        """Flag an active run for cancellation (its owner acts on it); idempotent."""
        now = time.time() if now is None else now
        stmt = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.state.notin_([s.value for s in TERMINAL]))
            .values(
                cancel_requested_at=func.coalesce(runs.c.cancel_requested_at, now), updated_at=now
            )
            .returning(*runs.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return await self.get(run_id)
        return from_row(Run, row)

    async def expired_queued(self, older_than: float, limit: int = 100) -> Sequence[Run]:
        """Queued runs created before ``older_than`` (to be expired)."""
        query = (
            select(runs)
            .where(runs.c.state == RunState.QUEUED.value, runs.c.created_at < older_than)
            .order_by(runs.c.id)
            .limit(limit)
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(Run, r) for r in rows]
