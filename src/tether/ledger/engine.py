"""Database engines and migrations for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on; write transactions
start with ``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade, and reads
use a separate engine whose statements run without an explicit transaction (each read
in the ledger is one statement, atomic on its own; no BEGIN and ROLLBACK round trips). PostgreSQL uses asyncpg. Migrations are Alembic's; at start-up
the current revision is read with one query and Alembic is imported only when an
upgrade is actually needed (it costs about half a second to import).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tether.errors import ConfigError
from tether.security.file_modes import private_dir, private_file

__all__ = ["HEAD_REVISION", "Database", "database_url"]

log = logging.getLogger(__name__)

HEAD_REVISION = "0008"
"""The newest migration; a test keeps it equal to Alembic's head."""

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 10_000


def database_url(configured: str | None, data_dir: Path) -> URL:
    """The async SQLAlchemy URL: the configured one (with async drivers) or SQLite in data_dir."""
    if not configured:
        return make_url(f"sqlite+aiosqlite:///{data_dir / 'tether.db'}")
    try:
        url = make_url(configured)
    except Exception as exc:
        raise ConfigError(f"invalid database URL: {exc}") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return url.set(drivername="postgresql+asyncpg")
    raise ConfigError(f"unsupported database {backend!r}: use sqlite or postgresql")


class Database:
    """The engines of one ledger database."""

    def __init__(
        self,
        url: URL,
        *,
        sqlite_synchronous: str = "NORMAL",
        pg_idle_transaction_timeout: float = 15.0,
    ) -> None:
        self.url = url
        self.dialect = url.get_backend_name()
        self.sqlite_synchronous = sqlite_synchronous
        self.pg_server_settings = {
            "idle_in_transaction_session_timeout": str(
                max(1, round(pg_idle_transaction_timeout * 1000))
            )
        }
        """Session settings of every PostgreSQL connection (the engine's and the writer's)."""
        if self.dialect == "sqlite":
            path = url.database or ""
            if not path or path == ":memory:":
                raise ConfigError("the SQLite ledger needs a file, not :memory:")
            db_file = Path(path)
            if not db_file.parent.exists():
                private_dir(db_file.parent, "ledger directory")
            # SQLite gives -wal and -shm the database file's mode: make that 0600 first
            private_file(db_file, "ledger file", create=True)
            for suffix in ("-wal", "-shm", "-journal"):
                private_file(db_file.with_name(db_file.name + suffix), "ledger file")
            self.engine = self._sqlite_engine(immediate=True, pool_size=2)
            self.reader = self._sqlite_engine(immediate=False, pool_size=4)
        else:
            self.engine = create_async_engine(
                url,
                pool_size=8,
                max_overflow=8,
                pool_pre_ping=True,
                connect_args={"server_settings": self.pg_server_settings},
            )
            self.reader = self.engine

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def asyncpg_dsn(self) -> str:
        """The URL in the form asyncpg's own ``connect`` takes (password included)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def sqlite_path(self) -> str:
        return self.url.database or ""

    def _sqlite_engine(self, *, immediate: bool, pool_size: int) -> AsyncEngine:
        engine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=0,
            connect_args={"timeout": SQLITE_BUSY_MS / 1000},
            pool_reset_on_return="rollback" if immediate else None,
        )
        synchronous = self.sqlite_synchronous

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cur.close()

        if immediate:

            @event.listens_for(engine.sync_engine, "begin")
            def _on_begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    async def revision(self) -> str | None:
        """The applied migration revision, or None for an empty database."""
        try:
            async with self.reader.connect() as conn:
                row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
        except SQLAlchemyError:
            return None
        return str(row[0]) if row else None

    async def upgrade(self) -> str:
        """Apply pending migrations (a no-op when already at head); return the revision."""
        current = await self.revision()
        if current == HEAD_REVISION:
            return current
        log.info("migrating the ledger", extra={"from": current or "empty", "to": HEAD_REVISION})
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                # several gateways may start at once: one migrates, the others wait
                await conn.execute(text("SELECT pg_advisory_xact_lock(7401735)"))
            await conn.run_sync(_upgrade_sync)
        return HEAD_REVISION

    async def aclose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


def alembic_config(connection: Any = None) -> Any:
    """An Alembic Config pointing at tether's migrations (and optionally a connection)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade_sync(connection: Any) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
