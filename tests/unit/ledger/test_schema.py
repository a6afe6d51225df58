"""The schema in tether.ledger.schema equals what the migrations build, on both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.config import LedgerConfig
from tether.ledger import Ledger
from tether.ledger.engine import HEAD_REVISION, alembic_config
from tether.ledger.schema import metadata


def test_head_constant_matches_alembic() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


async def test_metadata_equals_migrations(ledger: Ledger) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))

    async with ledger.db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []
    assert await ledger.db.revision() == HEAD_REVISION


async def test_open_twice_is_idempotent(database_url: str | None, tmp_path: Path) -> None:
    for _ in range(2):
        led = await Ledger.open(LedgerConfig(database_url=database_url), tmp_path)
        assert await led.db.revision() == HEAD_REVISION
        await led.aclose()
