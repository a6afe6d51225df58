"""Tool calls: every call sent to a runner, its token id, decision and outcome."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from sqlalchemy import insert, select, update

from tether.errors import NotFound
from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import tool_calls

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


class ToolCallStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        token_id: str,
        requested_by: str | None,
        now: float | None = None,
    ) -> None:
        """Record a call as ``dispatched`` before it is sent."""
        now = time.time() if now is None else now
        async with self.db.engine.begin() as conn:
            await conn.execute(
                insert(tool_calls).values(
                    id=call_id,
                    run_id=run_id or None,
                    runner_id=runner_id,
                    tool=tool,
                    args=args,
                    args_sha256=args_sha256,
                    workspace=workspace,
                    state="dispatched",
                    decision=decision,
                    token_id=token_id,
                    requested_by=requested_by,
                    created_at=now,
                    updated_at=now,
                )
            )

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
        values: dict[str, Any] = {"state": state, "updated_at": now, "finished_at": now}
        if result is not None:
            values["result"] = result
        if error_code is not None:
            values["error_code"] = error_code
            values["error"] = error
        stmt = update(tool_calls).where(
            tool_calls.c.id == call_id, tool_calls.c.finished_at.is_(None)
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(stmt.values(**values))

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
