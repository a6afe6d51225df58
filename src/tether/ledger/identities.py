"""Channel identities linked to users, and the one-time pairing codes that link them.

A person on a channel (a Feishu open_id, a webhook sender id) is nobody until an owner
links them to a tether user (``tether users link``) or they send, from the chat, a
pairing code the owner made for a user (``tether users pair``): one use, a short life,
stored only as a hash.
"""

from __future__ import annotations

import time

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.errors import Conflict, NotFound
from tether.ledger.engine import Database
from tether.ledger.records import from_row
from tether.ledger.schema import identities, users
from tether.ledger.users import UserRecord
from tether.security.credentials import hash_secret, new_enrolment_code, normalize_code

__all__ = ["IdentityRecord", "IdentityStore"]


class IdentityRecord(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    external_id: str
    user_id: str
    created_by: str | None
    created_at: float


class IdentityStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def link(
        self, channel: str, external_id: str, user_id: str, *, by: str | None
    ) -> IdentityRecord:
        """Link a channel identity to a user; ``conflict`` if it is linked to another."""
        values = {
            "channel": channel,
            "external_id": external_id,
            "user_id": user_id,
            "created_by": by,
            "created_at": time.time(),
        }
        try:
            async with self.db.engine.begin() as conn:
                row = (
                    await conn.execute(insert(identities).values(**values).returning(*identities.c))
                ).one()
        except IntegrityError as exc:
            current = await self.find(channel, external_id)
            if current is not None and current.user_id == user_id:
                return current
            raise Conflict(
                f"{channel} identity {external_id!r} is linked to another user; unlink it first",
                data={"channel": channel, "id": external_id},
            ) from exc
        return from_row(IdentityRecord, row)

    async def unlink(self, channel: str, external_id: str) -> IdentityRecord:
        stmt = (
            delete(identities)
            .where(identities.c.channel == channel, identities.c.external_id == external_id)
            .returning(*identities.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise NotFound(
                f"no {channel} identity {external_id!r} is linked",
                data={"channel": channel, "id": external_id},
            )
        return from_row(IdentityRecord, row)

    async def find(self, channel: str, external_id: str) -> IdentityRecord | None:
        query = select(identities).where(
            identities.c.channel == channel, identities.c.external_id == external_id
        )
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else from_row(IdentityRecord, row)

    async def user_of(self, channel: str, external_id: str) -> UserRecord | None:
        """The active user a channel identity is linked to, else None."""
        query = (
            select(users)
            .join(identities, identities.c.user_id == users.c.id)
            .where(
                identities.c.channel == channel,
                identities.c.external_id == external_id,
                users.c.status == "active",
            )
        )
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else from_row(UserRecord, row)

    async def of_user(self, user_id: str | None = None) -> list[IdentityRecord]:
        """Every link (of one user, when given), oldest first."""
        query = select(identities).order_by(identities.c.created_at)
        if user_id is not None:
            query = query.where(identities.c.user_id == user_id)
        async with self.db.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [from_row(IdentityRecord, r) for r in rows]

    # ---- pairing codes -------------------------------------------------------------

    async def new_pairing_code(self, user_id: str, *, ttl: float) -> tuple[str, float]:
        """A fresh code for ``user_id`` (replacing any earlier one) and when it expires."""
        code = new_enrolment_code()
        expires = time.time() + ttl
        stmt = (
            update(users)
            .where(users.c.id == user_id, users.c.status == "active")
            .values(pair_code_hash=hash_secret(normalize_code(code)), pair_expires_at=expires)
        )
        async with self.db.engine.begin() as conn:
            result = await conn.execute(stmt)
        if not result.rowcount:
            raise NotFound(f"no active user {user_id}", data={"user": user_id})
        return code, expires

    async def pair(self, code: str, channel: str, external_id: str) -> UserRecord | None:
        """Use a pairing code: link the identity to its user and spend the code (once,
        by compare-and-set). None if the code is unknown, spent or expired."""
        digest = hash_secret(normalize_code(code))
        now = time.time()
        spend = (
            update(users)
            .where(
                users.c.pair_code_hash == digest,
                users.c.pair_expires_at > now,
                users.c.status == "active",
            )
            .values(pair_code_hash=None, pair_expires_at=None)
            .returning(*users.c)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(spend)).first()
            if row is None:
                return None
            user = from_row(UserRecord, row)
            await conn.execute(
                delete(identities).where(
                    identities.c.channel == channel, identities.c.external_id == external_id
                )
            )
            await conn.execute(
                insert(identities).values(
                    channel=channel,
                    external_id=external_id,
                    user_id=user.id,
                    created_by=f"pairing:{user.id}",
                    created_at=now,
                )
            )
        return user
