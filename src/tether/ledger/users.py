"""People: a name, a role (``owner``, ``member``, ``viewer``) and a hashed login token."""

from __future__ import annotations

import time

import msgspec
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tether.errors import Conflict, NotFound
from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import users
from tether.security.credentials import new_secret, user_token
from tether.types import UserRole, new_id

__all__ = ["UserRecord", "UserStore"]


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    role: UserRole
    token_hash: str | None
    status: str
    """``active`` or ``revoked``."""
    created_at: float
    revoked_at: float | None


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, name: str, role: UserRole, *, now: float | None = None
    ) -> tuple[UserRecord, str]:
        """Create a user; returns the record and the login token (shown once, kept hashed)."""
        now = time.time() if now is None else now
        user_id = new_id("usr")
        secret, digest = new_secret()
        values = {
            "id": user_id,
            "name": name,
            "role": role,
            "token_hash": digest,
            "status": "active",
            "created_at": now,
            "revoked_at": None,
        }
        try:
            async with self.db.engine.begin() as conn:
                row = (await conn.execute(insert(users).values(**values).returning(*users.c))).one()
        except IntegrityError as exc:
            raise Conflict(f"a user called {name!r} already exists", data={"name": name}) from exc
        return from_row(UserRecord, row), user_token(user_id, secret)

    async def get(self, user_id: str) -> UserRecord:
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise NotFound(f"user {user_id} does not exist", data={"user": user_id})
        return from_row(UserRecord, row)

    async def find(self, name_or_id: str) -> UserRecord:
        query = select(users).where(or_(users.c.id == name_or_id, users.c.name == name_or_id))
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no user {name_or_id!r}", data={"user": name_or_id})
        return from_row(UserRecord, row)

    async def list(self) -> list[UserRecord]:
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(select(users).order_by(users.c.id))).all()
        return [from_row(UserRecord, r) for r in rows]

    async def revoke(self, name_or_id: str, *, now: float | None = None) -> UserRecord:
        """Revoke a user's login token for good (idempotent)."""
        user = await self.find(name_or_id)
        if user.status == "revoked":
            return user
        now = time.time() if now is None else now
        stmt = (
            update(users)
            .where(users.c.id == user.id)
            .values(status="revoked", token_hash=None, revoked_at=now)
            .returning(*users.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).one()
        return from_row(UserRecord, row)
