"""Everything a ledger holds, as text: every row of every table, on SQLite or PostgreSQL.

For SQLite the raw bytes of the database and its ``-wal`` file are added too, so a value
that was written and later overwritten (still in a free page or the log) is found.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

__all__ = ["dump_ledger"]


def _sqlite(path: Path) -> str:
    parts: list[str] = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "tool_calls" in tables, tables
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from the schema
                for value in row:
                    if isinstance(value, bytes):
                        parts.append(value.decode("utf-8", "replace"))
                    elif value is not None:
                        parts.append(str(value))
    finally:
        db.close()
    for suffix in ("", "-wal"):
        raw = path.with_name(path.name + suffix)
        if raw.exists():
            parts.append(raw.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


async def _postgres(url: str) -> str:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        assert "tool_calls" in tables, tables
        parts: list[str] = []
        for table in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):  # noqa: S608
                for value in row.values():
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("utf-8", "replace"))
                    elif value is not None:
                        parts.append(str(value))
        return "\n".join(parts)
    finally:
        await conn.close()


async def dump_ledger(database_url: str | None, data_dir: Path) -> str:
    """All stored text of the ledger at ``database_url`` (None: SQLite in ``data_dir``)."""
    if database_url is None:
        return _sqlite(data_dir / "tether.db")
    return await _postgres(database_url)
