"""Requests: approvals of tool calls and agents' questions, each decided at most once.

A request is open until a permitted person resolves it (a compare-and-set on ``state``,
so exactly one decision wins), it expires, or its run ends. Its id has 128 random bits;
its handle is a few characters, unique among the open requests of its session, for
typing in a chat.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.errors import Conflict, NotFound
from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import approvals
from tether.ledger.writer import EventWriter, Op

__all__ = ["RequestRecord", "RequestStore"]

_HANDLE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    run_id: str | None
    session_id: str | None
    call_id: str | None
    kind: str
    """``approval`` or ``question``."""
    handle: str
    summary: str
    tool: str | None
    args_sha256: str | None
    plan: str
    """JSON: what exactly would run (tool, workspace, arguments, parsed commands)."""
    choices: str
    """JSON list: a question's offered answers."""
    approvers: str
    """JSON list: principal ids and ``role:NAME`` entries that may decide."""
    state: str
    """``open``, ``allowed``, ``denied``, ``answered``, ``expired`` or ``cancelled``."""
    decision: str | None
    """``allow_once``, ``allow_session``, ``deny`` or ``answer``."""
    decided_by: str | None
    answer: str | None
    created_by: str | None
    created_at: float
    expires_at: float
    decided_at: float | None

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def plan_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.json.decode(self.plan or "{}")
        return data

    def choice_list(self) -> list[str]:
        data: list[str] = msgspec.json.decode(self.choices or "[]")
        return data

    def approver_list(self) -> list[str]:
        data: list[str] = msgspec.json.decode(self.approvers or "[]")
        return data


def _handle(length: int) -> str:
    return "".join(secrets.choice(_HANDLE_ALPHABET) for _ in range(length))


def new_request_id() -> str:
    """``req_`` + 128 random bits."""
    return "req_" + secrets.token_hex(16)


class RequestStore:
    """Requests; a decision is a compare-and-set that rides the writer's group commit."""

    def __init__(self, db: Database, writer: EventWriter) -> None:
        self.db = db
        self.writer = writer

    async def create(
        self,
        *,
        kind: str,
        run_id: str | None,
        session_id: str | None,
        call_id: str | None,
        summary: str,
        approvers: Sequence[str],
        expires_at: float,
        created_by: str | None,
        tool: str | None = None,
        args_sha256: str | None = None,
        plan: dict[str, Any] | None = None,
        choices: Sequence[str] = (),
        now: float | None = None,
    ) -> RequestRecord:
        now = time.time() if now is None else now
        values: dict[str, Any] = {
            "id": new_request_id(),
            "run_id": run_id,
            "session_id": session_id,
            "call_id": call_id,
            "kind": kind,
            "summary": summary,
            "tool": tool,
            "args_sha256": args_sha256,
            "plan": msgspec.json.encode(plan or {}).decode(),
            "choices": msgspec.json.encode(list(choices)).decode(),
            "approvers": msgspec.json.encode(list(approvers)).decode(),
            "state": "open",
            "decision": None,
            "decided_by": None,
            "answer": None,
            "created_by": created_by,
            "created_at": now,
            "expires_at": expires_at,
            "decided_at": None,
        }
        for attempt in range(12):
            values["handle"] = _handle(4 + attempt // 4)
            try:
                async with self.db.engine.begin() as conn:
                    stmt = insert(approvals).values(**values).returning(*approvals.c)
                    row = (await conn.execute(stmt)).one()
                return from_row(RequestRecord, row)
            except IntegrityError:
                continue  # the handle is taken among the session's open requests
        raise Conflict("could not find a free request handle")

    async def get(self, request_id: str) -> RequestRecord:
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(select(approvals).where(approvals.c.id == request_id))
            ).first()
        if row is None:
            raise NotFound(f"request {request_id} does not exist", data={"request": request_id})
        return from_row(RequestRecord, row)

    async def by_handle(self, handle: str) -> list[RequestRecord]:
        """Open requests with this handle (one per session at most)."""
        query = select(approvals).where(
            and_(approvals.c.handle == handle.lower(), approvals.c.state == "open")
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(RequestRecord, r) for r in rows]

    async def open(self, *, run_id: str | None = None, limit: int = 500) -> list[RequestRecord]:
        """Open requests, oldest first (of one run, or all)."""
        query = select(approvals).where(approvals.c.state == "open")
        if run_id is not None:
            query = query.where(approvals.c.run_id == run_id)
        query = query.order_by(approvals.c.created_at).limit(limit)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(RequestRecord, r) for r in rows]

    async def for_run(self, run_id: str) -> list[RequestRecord]:
        """Every request of a run, oldest first."""
        query = (
            select(approvals).where(approvals.c.run_id == run_id).order_by(approvals.c.created_at)
        )
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(RequestRecord, r) for r in rows]

    async def open_question(self, run_id: str, summary: str) -> RequestRecord | None:
        """The open question a resumed run asked before a restart."""
        for record in await self.open(run_id=run_id):
            if record.kind == "question" and record.summary == summary:
                return record
        return None

    async def resolve(
        self,
        request_id: str,
        *,
        state: str,
        decision: str,
        by: str,
        answer: str | None = None,
        now: float | None = None,
        known: RequestRecord | None = None,
    ) -> RequestRecord:
        """Decide an open request; ``conflict`` if it was decided, expired or closed.
        ``known``: the request as read before (its fixed parts), so a decision that wins
        needs no read afterwards."""
        now = time.time() if now is None else now
        values = {"state": state, "decision": decision, "decided_by": by, "answer": answer}
        op = Op("request.resolve", {"request_id": request_id, "open": "open", "now": now, **values})
        if await self.writer.count(op) == 1:
            if known is not None and known.id == request_id:
                return msgspec.structs.replace(known, decided_at=now, **values)
            return await self.get(request_id)
        current = await self.get(request_id)
        if current.is_open:  # past its expiry: it is expired, whoever asks
            await self.expire_due(now)
            current = await self.get(request_id)
        raise Conflict(
            f"request {current.handle} is already {current.state}"
            + (f" (by {current.decided_by})" if current.decided_by else ""),
            data={"request": current.id, "state": current.state},
        )

    async def expire_due(self, now: float | None = None) -> list[RequestRecord]:
        """Mark every open request past its expiry ``expired``; returns them."""
        now = time.time() if now is None else now
        stmt = (
            update(approvals)
            .where(and_(approvals.c.state == "open", approvals.c.expires_at <= now))
            .values(state="expired", decided_at=now)
            .returning(*approvals.c)
        )
        async with self.db.engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
        return [from_row(RequestRecord, r) for r in rows]

    async def close_for_run(
        self, run_id: str, *, by: str, now: float | None = None, request_id: str | None = None
    ) -> list[RequestRecord]:
        """Deny the open requests of a run that ends or is cancelled (or just one)."""
        now = time.time() if now is None else now
        which = approvals.c.run_id == run_id
        if request_id is not None:
            which = and_(which, approvals.c.id == request_id)
        stmt = (
            update(approvals)
            .where(and_(which, approvals.c.state == "open"))
            .values(state="cancelled", decision="deny", decided_by=by, decided_at=now)
            .returning(*approvals.c)
        )
        async with self.db.engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
        return [from_row(RequestRecord, r) for r in rows]
