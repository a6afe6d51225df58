"""Real databases for tests: PostgreSQL databases copied from a migrated template."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import asyncpg

PG_ADMIN_DSN = os.environ.get("TETHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PgTemplate:
    """One migrated template database per test process; each test gets a fresh copy."""

    def __init__(self) -> None:
        self.name = f"tether_tpl_{os.getpid()}"
        self.ready = False

    async def prepare(self, tmp: Path) -> None:
        if self.ready:
            return
        from tether.config import LedgerConfig
        from tether.ledger import Ledger

        await _admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        await _admin(f'CREATE DATABASE "{self.name}"')
        ledger = await Ledger.open(LedgerConfig(database_url=pg_url(self.name)), tmp)
        await ledger.aclose()
        self.ready = True

    async def copy(self) -> str:
        name = f"tether_t_{uuid.uuid4().hex[:12]}"
        await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        return name

    @staticmethod
    async def drop(name: str) -> None:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_template(self) -> None:
        if self.ready:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
