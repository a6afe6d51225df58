"""``Ledger``: the one repository the rest of tether talks to.

It owns the database engines, runs migrations at open, and exposes domain stores:
``ledger.runs`` (runs, leases, transitions), ``ledger.events`` (group-committed
events, artifacts), ``ledger.sessions``, ``ledger.runners`` (enrolment, credentials),
``ledger.tool_calls``, ``ledger.users``, ``ledger.requests``, ``ledger.conversations``
(conversations and inbound receipts), ``ledger.identities`` (channel identities and
pairing codes), ``ledger.deliveries`` and ``ledger.routines``. Nothing outside ``tether.ledger`` builds
queries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from tether.config import LedgerConfig
from tether.ledger.conversations import ConversationStore
from tether.ledger.deliveries import DeliveryStore
from tether.ledger.engine import Database, database_url
from tether.ledger.events import EventStore
from tether.ledger.identities import IdentityStore
from tether.ledger.requests import RequestStore
from tether.ledger.retention import PurgeResult, purge
from tether.ledger.routines import RoutineStore
from tether.ledger.runners import RunnerStore
from tether.ledger.runs import RunStore
from tether.ledger.sessions import SessionStore
from tether.ledger.tool_calls import ToolCallStore
from tether.ledger.users import UserStore
from tether.ledger.writer import EventWriter, PostgresWriter, SqliteWriter

__all__ = ["Ledger"]

log = logging.getLogger(__name__)


class Ledger:
    """Open with :meth:`open`; close with :meth:`aclose` (or ``async with``)."""

    def __init__(self, db: Database, config: LedgerConfig) -> None:
        self.db = db
        self.config = config
        self.writer: EventWriter
        if db.is_sqlite:
            self.writer = SqliteWriter(
                db.sqlite_path,
                synchronous=config.sqlite_synchronous,
                max_rows=config.group_commit_max_rows,
            )
        else:
            self.writer = PostgresWriter(
                db.asyncpg_dsn,
                max_rows=config.group_commit_max_rows,
                server_settings=db.pg_server_settings,
            )
        self.runs = RunStore(db, self.writer)
        self.events = EventStore(db, self.writer, inline_payload_bytes=config.inline_payload_bytes)
        self.sessions = SessionStore(db)
        self.runners = RunnerStore(db)
        self.tool_calls = ToolCallStore(db, self.writer)
        self.users = UserStore(db)
        self.requests = RequestStore(db, self.writer)
        self.conversations = ConversationStore(db)
        self.identities = IdentityStore(db)
        self.deliveries = DeliveryStore(db)
        self.routines = RoutineStore(db)

    @classmethod
    async def open(
        cls,
        config: LedgerConfig,
        data_dir: Path,
        *,
        migrate: bool = True,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> Ledger:
        """Connect (SQLite in ``data_dir`` unless a URL is configured) and migrate to head.

        ``on_fatal`` is told if the event writer dies of an unexpected exception."""
        db = Database(
            database_url(config.database_url, data_dir),
            sqlite_synchronous=config.sqlite_synchronous,
            pg_idle_transaction_timeout=config.pg_idle_transaction_timeout,
        )
        try:
            if migrate:
                await db.upgrade()
        except BaseException:
            await db.aclose()
            raise
        ledger = cls(db, config)
        ledger.writer.on_fatal = on_fatal
        ledger.writer.start()
        return ledger

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def purge(self, *, now: float | None = None) -> PurgeResult:
        """Apply the retention policy once."""
        day = 86_400.0
        return await purge(
            self.db,
            event_retention=self.config.event_retention_days * day,
            artifact_retention=self.config.artifact_retention_days * day,
            now=now,
        )

    async def aclose(self) -> None:
        await self.writer.aclose()
        await self.db.aclose()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
