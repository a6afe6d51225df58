"""PostgreSQL sessions of the ledger end transactions left idle (a stalled gateway's locks)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tether.config import LedgerConfig
from tether.ledger import Ledger
from tether.ledger.writer import PostgresWriter


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_transaction_left_idle_is_ended_by_the_server(
    database_url: str, tmp_path: Path
) -> None:
    config = LedgerConfig(database_url=database_url, pg_idle_transaction_timeout=0.3)
    ledger = await Ledger.open(config, tmp_path)
    try:
        conn = await ledger.db.engine.connect()
        try:
            await conn.begin()
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(1.0)  # the client stalls mid-transaction
            with pytest.raises(DBAPIError):
                await conn.execute(text("SELECT 1"))
        finally:
            await conn.invalidate()
            await conn.close()
        # the event writer's own connection carries the same setting
        assert isinstance(ledger.writer, PostgresWriter)
        writer_conn = await ledger.writer._connection()
        assert await writer_conn.fetchval("SHOW idle_in_transaction_session_timeout") == "300ms"
    finally:
        await ledger.aclose()
