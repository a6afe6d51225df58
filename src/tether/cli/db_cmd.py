"""``tether db``: the ledger's schema migrations."""

from __future__ import annotations

import typer

from tether.cli import context
from tether.cli.help import examples

__all__ = ["app"]

app = typer.Typer(
    help="Inspect and migrate the ledger database.",
    no_args_is_help=True,
    epilog=examples("tether db status", "tether db upgrade"),
)


def _database() -> tuple[object, str]:
    from tether.config import redact_url
    from tether.ledger.engine import Database, database_url

    config = context.current().config()
    url = database_url(config.ledger.database_url, config.data_path)
    shown = redact_url(url.render_as_string(hide_password=False))
    ledger = config.ledger
    db = Database(
        url,
        sqlite_synchronous=ledger.sqlite_synchronous,
        pg_idle_transaction_timeout=ledger.pg_idle_transaction_timeout,
    )
    return db, shown


@app.command(
    "status",
    epilog=examples(
        "tether db status",
        "TETHER_DATABASE_URL=postgresql://tether@db/tether tether db status --json",
    ),
)
def status() -> None:
    """Show the database (password masked), its schema revision and whether migrations
    are pending."""
    from tether.ledger.engine import HEAD_REVISION, Database

    db, shown = _database()
    assert isinstance(db, Database)

    async def go() -> str | None:
        try:
            return await db.revision()
        finally:
            await db.aclose()

    current = context.run_async(go())
    data = {
        "database": shown,
        "revision": current,
        "head": HEAD_REVISION,
        "pending": current != HEAD_REVISION,
    }
    context.current().emit(
        data,
        f"database  {shown}\n"
        f"revision  {current or 'none (empty database)'}\n"
        f"head      {HEAD_REVISION}\n"
        + (
            "status    migrations pending: run `tether db upgrade`"
            if data["pending"]
            else "status    up to date"
        ),
    )


@app.command("upgrade", epilog=examples("tether db upgrade", "tether db upgrade --data-dir DIR"))
def upgrade() -> None:
    """Apply pending migrations (the gateway also does this at start)."""
    from tether.ledger.engine import Database

    db, shown = _database()
    assert isinstance(db, Database)

    async def go() -> tuple[str | None, str]:
        try:
            before = await db.revision()
            return before, await db.upgrade()
        finally:
            await db.aclose()

    before, after = context.run_async(go())
    context.current().emit(
        {"database": shown, "from": before, "to": after},
        f"{shown}: already at {after}"
        if before == after
        else f"{shown}: migrated {before or 'empty'} -> {after}",
    )
