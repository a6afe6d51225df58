"""Conversations and the sessions bound to them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update

from tether.errors import NotFound
from tether.ledger.engine import Database
from tether.ledger.records import Session, from_row
from tether.ledger.schema import session_rules, sessions
from tether.types import SessionMode, new_id

__all__ = ["SessionStore", "conversation_key"]


def conversation_key(channel: str, chat_id: str, thread: str | None = None) -> str:
    """``channel:chat_id[:thread]`` — the id of a conversation."""
    return f"{channel}:{chat_id}" + (f":{thread}" if thread else "")


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        agent: str,
        conversation_id: str | None = None,
        runner_id: str | None = None,
        workspace: str | None = None,
        mode: SessionMode = "auto-read",
        created_by: str | None = None,
        now: float | None = None,
    ) -> Session:
        now = time.time() if now is None else now
        values = {
            "mode": mode,
            "id": new_id("ses"),
            "conversation_id": conversation_id,
            "agent": agent,
            "runner_id": runner_id,
            "workspace": workspace,
            "policy": "{}",
            "status": "active",
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.engine.begin() as conn:
            row = (
                await conn.execute(insert(sessions).values(**values).returning(*sessions.c))
            ).one()
        return from_row(Session, row)

    async def update(
        self,
        session_id: str,
        *,
        agent: str | None = None,
        runner_id: str | None = None,
        workspace: str | None = None,
        mode: SessionMode | None = None,
        agent_thread: str | None = None,
        agent_resume: str | None = None,
        clear: frozenset[str] = frozenset(),
        now: float | None = None,
    ) -> Session:
        """Change a session's settings: given values are set, names in ``clear``
        (``runner_id``, ``workspace``, ``agent_thread``) are unset, the rest is kept."""
        values: dict[str, Any] = {"updated_at": time.time() if now is None else now}
        for name, value in (
            ("agent", agent),
            ("runner_id", runner_id),
            ("workspace", workspace),
            ("mode", mode),
            ("agent_thread", agent_thread),
            ("agent_resume", agent_resume),
        ):
            if value is not None:
                values[name] = value
        for name in clear & {"runner_id", "workspace", "agent_thread"}:
            values[name] = None
        if "agent_thread" in clear:
            values["agent_resume"] = None
        stmt = (
            update(sessions)
            .where(sessions.c.id == session_id)
            .values(**values)
            .returning(*sessions.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise NotFound(f"session {session_id} does not exist", data={"session_id": session_id})
        return from_row(Session, row)

    async def get(self, session_id: str) -> Session:
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.id == session_id))).first()
        if row is None:
            raise NotFound(f"session {session_id} does not exist", data={"session_id": session_id})
        return from_row(Session, row)

    async def list(
        self, *, before: str | None = None, limit: int = 50, owner: str | None = None
    ) -> tuple[list[Session], str | None]:
        """Newest first; ``owner``: only the sessions that principal created."""
        query = select(sessions).order_by(sessions.c.id.desc()).limit(limit + 1)
        if owner is not None:
            query = query.where(sessions.c.created_by == owner)
        if before is not None:
            query = query.where(sessions.c.id < before)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [from_row(Session, r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit else None)

    async def add_rules(
        self,
        session_id: str,
        rules: Sequence[str],
        *,
        created_by: str | None,
        request_id: str | None = None,
        now: float | None = None,
    ) -> None:
        """Add rules (JSON text each) to a session, for "allow for this session"."""
        now = time.time() if now is None else now
        rows = [
            {
                "id": new_id("srl"),
                "session_id": session_id,
                "rule": rule,
                "created_by": created_by,
                "request_id": request_id,
                "created_at": now,
            }
            for rule in rules
        ]
        if rows:
            async with self.db.engine.begin() as conn:
                await conn.execute(insert(session_rules), rows)

    async def rules(self, session_id: str) -> Sequence[str]:
        """The session's rules (JSON text), oldest first."""
        query = (
            select(session_rules.c.rule)
            .where(session_rules.c.session_id == session_id)
            .order_by(session_rules.c.id)
        )
        async with self.db.reader.connect() as conn:
            return [r[0] for r in (await conn.execute(query)).all()]
