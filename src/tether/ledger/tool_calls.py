"""Tool calls: every call sent to a runner, its token id, decision and outcome."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from sqlalchemy import select

from tether.errors import NotFound
from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import tool_calls
from tether.ledger.writer import EventWriter, Op

__all__ = ["ToolCallRecord", "ToolCallStore"]


class ToolCallRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    run_id: str | None
    runner_id: str
    tool: str
    args: str
    args_sha256: str
    workspace: str | None
    state: str
    decision: str | None
    token_id: str | None
    result: str | None
    error_code: str | None
    error: str | None
    requested_by: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    decided_by: str | None = None
    """``rule: …`` or the principal who approved or denied it."""
    rule: str | None = None
    request_id: str | None = None


class ToolCallStore:
    """Tool-call records ride the event writer's group commits (they are frequent and small)."""

    def __init__(self, db: Database, writer: EventWriter) -> None:
        self.db = db
        self.writer = writer

    async def create(
        self,
        *,
        call_id: str,
        run_id: str | None,
        runner_id: str,
        tool: str,
        args: str,
        args_sha256: str,
        workspace: str,
        decision: str,
        token_id: str | None,
        requested_by: str | None,
        decided_by: str | None = None,
        rule: str | None = None,
        request_id: str | None = None,
        state: str = "dispatched",
        error_code: str | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        """Record a call as ``dispatched`` (or, refused, as ``denied`` with no token);
        returns once committed (before it is sent)."""
        now = time.time() if now is None else now
        params: dict[str, Any] = {
            "id": call_id,
            "run_id": run_id or None,
            "runner_id": runner_id,
            "tool": tool,
            "args": args,
            "args_sha256": args_sha256,
            "workspace": workspace,
            "state": state,
            "decision": decision,
            "token_id": token_id,
            "result": None,
            "error_code": error_code,
            "error": error,
            "requested_by": requested_by,
            "created_at": now,
            "updated_at": now,
            "finished_at": None if state == "dispatched" else now,
            "decided_by": decided_by,
            "rule": rule,
            "request_id": request_id,
        }
        await self.writer.apply([Op("tool_call.insert", params)])

    async def finish(
        self,
        call_id: str,
        *,
        state: str,
        result: str | None = None,
        error_code: str | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        """Record the outcome (``succeeded``, ``failed``, ``timeout``, ``cancelled``) once."""
        now = time.time() if now is None else now
        params = {
            "call_id": call_id,
            "state": state,
            "result": result,
            "error_code": error_code,
            "error": error,
            "updated_at": now,
            "finished_at": now,
        }
        await self.writer.apply([Op("tool_call.finish", params)])

    async def get(self, call_id: str) -> ToolCallRecord:
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(select(tool_calls).where(tool_calls.c.id == call_id))).first()
        if row is None:
            raise NotFound(f"tool call {call_id} does not exist")
        return from_row(ToolCallRecord, row)

    async def for_run(self, run_id: str) -> list[ToolCallRecord]:
        query = select(tool_calls).where(tool_calls.c.run_id == run_id).order_by(tool_calls.c.id)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(ToolCallRecord, r) for r in rows]
