"""Group commit for run events: many appenders, one transaction per batch.

Appenders hand rows to a writer and wait; the writer takes everything queued (up to
``max_rows``), commits it in one transaction and wakes every appender of the batch.
While one batch commits the next gathers, so throughput rises with concurrency instead
of paying one commit per event. The queue is bounded: appenders wait for room.

Appends are idempotent by content: an identical row at an existing (run_id, seq) is a
no-op; a different row there fails that appender with :class:`Conflict`. Appends are
fenced: a row is written only while its epoch is the run's current lease epoch, so a
gateway that lost its lease cannot add events; its appender gets :class:`Conflict` with
``data["reason"] == "fenced"``. On PostgreSQL the insert share-locks the runs it
writes to, so a takeover (an UPDATE of the run's epoch) waits for a batch already in
flight and the new owner sees that batch; without the lock such a batch could land
after the takeover, under the new owner's feet. A batch that fails as a whole (say a
foreign-key error from one unknown run id) is retried item by item, so only the faulty
appender sees the error.

- :class:`SqliteWriter` runs on a dedicated thread with its own sqlite3 connection and
  takes work straight from a thread-safe queue (SQLite has one writer at a time; the
  thread keeps the event loop free and needs no task hop per batch).
- :class:`PostgresWriter` is a task on a dedicated asyncpg connection inserting each
  batch with one ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING``.

Besides events, a writer applies ops (:class:`Op`): small, frequent writes (tool-call
records) that ride in the same group commits instead of paying a transaction each. A
*counted* op (:meth:`count`) runs on its own inside the batch and reports how many rows
it changed, which makes it a compare-and-set (a request's decision). The statements are
SQLAlchemy Core from ``tether.ledger.schema``, compiled once per dialect.

An unexpected exception inside a batch (anything but the database errors handled
above) settles every appender of that batch, and of everything queued after it, with
``internal``; later appends are refused the same way; and the writer reports the
failure through ``on_fatal`` (the gateway's supervisor stops the gateway). No appender
ever waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql import ClauseElement

from tether.errors import (
    Conflict,
    ConnectionClosed,
    InternalError,
    NotFound,
    Overloaded,
    TetherError,
)
from tether.ledger.schema import approvals, run_events, runs, tool_calls

__all__ = ["STATEMENTS", "EventRow", "EventWriter", "Op", "PostgresWriter", "SqliteWriter"]

log = logging.getLogger(__name__)

EventRow = tuple[str, int, str, str, str, float, int, int | None]
"""(run_id, seq, kind, source, payload, created_at, epoch, origin) in table column order."""

COLUMNS = ("run_id", "seq", "kind", "source", "payload", "created_at", "epoch", "origin")
if tuple(c.name for c in run_events.columns) != COLUMNS:  # pragma: no cover - schema guard
    raise RuntimeError("EventRow must follow the run_events columns")
_TABLE = run_events.name
_LOOKUP = f"SELECT kind, source, payload FROM {_TABLE} WHERE run_id = ? AND seq = ?"  # noqa: S608
_EPOCH = f"SELECT epoch FROM {runs.name} WHERE id = ?"  # noqa: S608


STATEMENTS: dict[str, ClauseElement] = {
    "tool_call.insert": insert(tool_calls).values(
        {c.name: bindparam(c.name) for c in tool_calls.columns}
    ),
    "tool_call.finish": update(tool_calls)
    .where(tool_calls.c.id == bindparam("call_id"), tool_calls.c.finished_at.is_(None))
    .values(
        state=bindparam("state"),
        result=bindparam("result"),
        error_code=bindparam("error_code"),
        error=bindparam("error"),
        updated_at=bindparam("updated_at"),
        finished_at=bindparam("finished_at"),
    ),
    # once per run, by its current owner: what the run may ever use
    "run.authorize": update(runs)
    .where(
        runs.c.id == bindparam("run_id"),
        runs.c.epoch == bindparam("epoch"),
        runs.c.authorization.is_(None),
    )
    .values(authorization=bindparam("authorization")),
    # a compare-and-set: only an open, unexpired request is decided (see Op.counted)
    "request.resolve": update(approvals)
    .where(
        approvals.c.id == bindparam("request_id"),
        approvals.c.state == bindparam("open"),
        approvals.c.expires_at > bindparam("now"),
    )
    .values(
        state=bindparam("state"),
        decision=bindparam("decision"),
        decided_by=bindparam("decided_by"),
        answer=bindparam("answer"),
        decided_at=bindparam("now"),
    ),
}
"""Writes that may be batched, by name."""


@dataclass(frozen=True, slots=True)
class Op:
    """One batched write: a statement from :data:`STATEMENTS` and its parameters."""

    statement: str
    params: dict[str, Any]
    counted: bool = False
    """Run on its own and report how many rows it changed (a compare-and-set)."""


def _compile_all(dialect: Any) -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for name, stmt in STATEMENTS.items():
        compiled = stmt.compile(dialect=dialect)
        order = getattr(compiled, "positiontup", None) or ()
        out[name] = (str(compiled), tuple(order))
    return out


def _grouped(
    batch: Sequence[_Item], compiled: dict[str, tuple[str, tuple[str, ...]]]
) -> dict[str, list[tuple[Any, ...]]]:
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for item in batch:
        for op in item.ops:
            if op.counted:
                continue
            sql, names = compiled[op.statement]
            groups.setdefault(sql, []).append(tuple(op.params.get(n) for n in names))
    return groups


def _counted(
    batch: Sequence[_Item], compiled: dict[str, tuple[str, tuple[str, ...]]]
) -> list[tuple[_Item, str, tuple[Any, ...]]]:
    out = []
    for item in batch:
        item.changed = 0  # a batch retried item by item counts again
        for op in item.ops:
            if op.counted:
                sql, names = compiled[op.statement]
                out.append((item, sql, tuple(op.params.get(n) for n in names)))
    return out


class EventWriter(Protocol):
    """What the stores need from a writer."""

    batches: int
    rows_written: int
    failure: BaseException | None
    on_fatal: Callable[[BaseException], None] | None

    def start(self) -> None: ...

    async def append(self, rows: Sequence[EventRow]) -> None: ...

    async def apply(self, ops: Sequence[Op]) -> None: ...

    async def count(self, op: Op) -> int: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Item:
    rows: Sequence[EventRow]
    future: asyncio.Future[int]
    ops: Sequence[Op] = ()
    error: BaseException | None = field(default=None)
    changed: int = 0
    """Rows its counted ops changed."""

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.ops)


def _conflict(row: EventRow) -> Conflict:
    return Conflict(
        f"run {row[0]} already has different content at seq {row[1]}",
        data={"run_id": row[0], "seq": row[1]},
    )


def _mark(
    items: Sequence[_Item],
    existing: Callable[[EventRow], tuple[str, str, str] | None],
    epoch_of: Callable[[str], int | None],
) -> None:
    """After an insert that skipped some rows: fail the items whose rows were not written
    and are not stored as they are (a different row at the key, a stale epoch, no run)."""
    for item in items:
        for row in item.rows:
            stored = existing(row)
            if stored == (row[2], row[3], row[4]):
                continue
            current = epoch_of(row[0])
            if current is None:
                item.error = NotFound(f"run {row[0]} does not exist", data={"run_id": row[0]})
            elif current != row[6]:
                item.error = Conflict(
                    f"run {row[0]} is now held under lease epoch {current}, not {row[6]}",
                    data={"run_id": row[0], "reason": "fenced", "epoch": current},
                )
            else:
                item.error = _conflict(row)
            break


class _Backpressure:
    """Counts queued rows (on the event loop) and makes appenders wait when over the bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0
        self.room = asyncio.Event()
        self.room.set()

    async def wait(self, n: int) -> None:
        while self.pending >= self.limit:
            self.room.clear()
            await self.room.wait()
        self.pending += n

    def take(self, n: int) -> bool:
        """Count ``n`` rows in if there is room now (the common case, no await)."""
        if self.pending >= self.limit:
            return False
        self.pending += n
        return True

    def release(self, n: int) -> None:
        self.pending -= n
        if self.pending < self.limit:
            self.room.set()


def _settle(items: Sequence[_Item], gate: _Backpressure) -> None:
    for item in items:
        gate.release(item.size)
        if item.future.done():
            continue
        if item.error is None:
            item.future.set_result(item.changed)
        else:
            item.future.set_exception(item.error)


class _Writer:
    """What both writers share: the bounded, awaitable submission of rows and ops."""

    _gate: _Backpressure
    _closing: bool
    failure: BaseException | None = None
    on_fatal: Callable[[BaseException], None] | None = None
    _carry: _Item | None = None
    """An item taken from the queue that did not fit the last batch."""
    """Told once when the writer dies of an unexpected exception."""

    def _broken(self) -> InternalError:
        return InternalError(f"the ledger's event writer failed: {self.failure!r}")

    def _died(self, exc: BaseException, items: Sequence[_Item]) -> None:
        """On the event loop: settle ``items`` with ``internal`` and report the failure."""
        first = self.failure is None
        self.failure = self.failure or exc
        for item in items:
            item.error = self._broken()
        _settle(items, self._gate)
        if first:
            log.critical("the ledger's event writer failed", exc_info=exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    async def append(self, rows: Sequence[EventRow]) -> None:
        """Return once ``rows`` are committed; Conflict if a key holds other content."""
        if rows:
            await self._submit(rows, ())

    async def apply(self, ops: Sequence[Op]) -> None:
        """Return once ``ops`` are committed."""
        if ops:
            await self._submit((), ops)

    async def count(self, op: Op) -> int:
        """Commit one counted op (a conditional update) and return how many rows it
        changed: a compare-and-set that rides the group commit."""
        return await self._submit((), (Op(op.statement, op.params, counted=True),))

    async def _submit(self, rows: Sequence[EventRow], ops: Sequence[Op]) -> int:
        if self.failure is not None:
            raise self._broken()
        if self._closing:
            raise ConnectionClosed("the ledger is closed")
        size = len(rows) + len(ops)
        if not self._gate.take(size):
            await self._gate.wait(size)
        item = _Item(rows, asyncio.get_running_loop().create_future(), ops)
        self._enqueue(item)
        return await item.future

    def _enqueue(self, item: _Item) -> None:
        raise NotImplementedError


class SqliteWriter(_Writer):
    """Group commit on a dedicated thread. See the module docstring."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        max_rows: int = 512,
        max_pending_rows: int = 65_536,
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._max_rows = max_rows
        self._gate = _Backpressure(max_pending_rows)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tether-ledger-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._insert = (
            f"INSERT OR IGNORE INTO {_TABLE} ({', '.join(COLUMNS)}) "  # noqa: S608
            f"SELECT {', '.join('?' * len(COLUMNS))} "
            f"WHERE EXISTS (SELECT 1 FROM {runs.name} WHERE id = ?1 AND epoch = ?7)"
        )
        self._compiled = _compile_all(sqlite_dialect.dialect(paramstyle="qmark"))
        self._inflight: list[_Item] = []
        self.batches = 0
        self.rows_written = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def _enqueue(self, item: _Item) -> None:
        if self._loop is None:
            raise ConnectionClosed("the ledger writer is not started")
        self._queue.put(item)
        if not self._thread.is_alive() and self.failure is None:
            # died between the check in _submit and now: the item is settled on the loop
            self._loop.call_soon(self._died, RuntimeError("writer thread ended"), self._drain())

    # ---- the writer thread ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=10)
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={self._synchronous}",
            "foreign_keys=ON",
            "busy_timeout=10000",
            # checkpoint less often: hot index pages are then written once per checkpoint
            "wal_autocheckpoint=10000",
            "journal_size_limit=67108864",
        ):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - reported on the loop, never lost
            items = self._drain()
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop may be gone at exit
                self._loop.call_soon_threadsafe(self._died, exc, items)

    def _drain(self) -> list[_Item]:
        items = list(self._inflight)
        if self._carry is not None:
            items.append(self._carry)
            self._carry = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items
            if item is not None:
                items.append(item)

    def _serve(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._carry if self._carry is not None else self._queue.get()
                self._carry = None
                if first is None:
                    return
                batch, count, stop = [first], first.size, False
                while count < self._max_rows:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    if count + nxt.size > self._max_rows:
                        self._carry = nxt
                        break
                    batch.append(nxt)
                    count += nxt.size
                self._inflight = batch
                self._commit(conn, batch)
                self._inflight = []
                assert self._loop is not None
                self._loop.call_soon_threadsafe(_settle, batch, self._gate)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        rows = [row for item in batch for row in item.rows]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in _grouped(batch, self._compiled).items():
                    conn.executemany(sql, params)
                for item, sql, values in _counted(batch, self._compiled):
                    item.changed += conn.execute(sql, values).rowcount
                before = conn.total_changes
                conn.executemany(self._insert, rows)
                written = conn.total_changes - before
                if written != len(rows):

                    def existing(row: EventRow) -> tuple[str, str, str] | None:
                        found = conn.execute(_LOOKUP, (row[0], row[1])).fetchone()
                        return None if found is None else (found[0], found[1], found[2])

                    def epoch_of(run_id: str) -> int | None:
                        found = conn.execute(_EPOCH, (run_id,)).fetchone()
                        return None if found is None else int(found[0])

                    _mark(batch, existing, epoch_of)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if len(batch) > 1:
                for item in batch:
                    self._commit(conn, [item])
                return
            run_id = batch[0].rows[0][0] if batch[0].rows else ""
            batch[0].error = _sqlite_error(exc, run_id)
            return
        self.batches += 1
        self.rows_written += written

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._queue.put(None)
        if self._thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)


def _sqlite_error(exc: sqlite3.Error, run_id: str) -> TetherError:
    if isinstance(exc, sqlite3.IntegrityError):
        return NotFound(f"run {run_id} does not exist", data={"run_id": run_id})
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return Overloaded("the ledger is busy; retry")
    return InternalError(f"event append failed: {exc}")


class PostgresWriter(_Writer):
    """Group commit on a dedicated asyncpg connection. See the module docstring."""

    _SQL = (
        f"INSERT INTO {_TABLE} ({', '.join(COLUMNS)}) "  # noqa: S608
        f"SELECT u.* FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], "
        f"$6::float8[], $7::int[], $8::int[]) AS u({', '.join(COLUMNS)}) "
        f"JOIN {runs.name} r ON r.id = u.run_id AND r.epoch = u.epoch "
        "FOR SHARE OF r ON CONFLICT DO NOTHING"
    )
    _EPOCHS_PG = f"SELECT id, epoch FROM {runs.name} WHERE id = ANY($1::text[])"  # noqa: S608
    _LOOKUP_PG = (
        f"SELECT run_id, seq, kind, source, payload FROM {_TABLE} "  # noqa: S608
        "WHERE (run_id, seq) IN (SELECT * FROM unnest($1::text[], $2::int[]))"
    )

    def __init__(
        self,
        dsn: str,
        *,
        max_rows: int = 512,
        max_pending_rows: int = 65_536,
        server_settings: dict[str, str] | None = None,
    ) -> None:
        self._dsn = dsn
        self._server_settings = server_settings
        self._max_rows = max_rows
        self._gate = _Backpressure(max_pending_rows)
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._compiled = _compile_all(asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
        self.batches = 0
        self.rows_written = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger:pg-writer")

    def _enqueue(self, item: _Item) -> None:
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        batch: list[_Item] = []
        try:
            await self._serve(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - settled and reported, never lost
            items = list(batch)
            if self._carry is not None:
                items.append(self._carry)
                self._carry = None
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    items.append(item)
            self._died(exc, items)

    async def _serve(self, batch: list[_Item]) -> None:
        while True:
            batch.clear()
            first = self._carry if self._carry is not None else await self._queue.get()
            self._carry = None
            if first is None:
                return
            batch.append(first)
            count = first.size
            stop = False
            while count < self._max_rows and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                if count + nxt.size > self._max_rows:
                    self._carry = nxt
                    break
                batch.append(nxt)
                count += nxt.size
            await self._commit(batch)
            _settle(batch, self._gate)
            batch.clear()
            if stop or (self._carry is None and self._closing and self._queue.empty()):
                return

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            import asyncpg

            self._conn = await asyncpg.connect(self._dsn, server_settings=self._server_settings)
        return self._conn

    async def _commit(self, batch: list[_Item]) -> None:
        import asyncpg

        rows = [row for item in batch for row in item.rows]
        columns = [list(col) for col in zip(*rows, strict=True)] if rows else []
        try:
            conn = await self._connection()
            async with conn.transaction():
                for sql, params in _grouped(batch, self._compiled).items():
                    await conn.executemany(sql, params)
                for item, sql, values in _counted(batch, self._compiled):
                    status = await conn.execute(sql, *values)
                    item.changed += int(status.rsplit(" ", 1)[-1])
                written = 0
                if rows:
                    status = await conn.execute(self._SQL, *columns)
                    written = int(status.rsplit(" ", 1)[-1])
                if written != len(rows):
                    found = await conn.fetch(self._LOOKUP_PG, columns[0], columns[1])
                    stored = {(r[0], r[1]): (r[2], r[3], r[4]) for r in found}
                    ids = list(set(columns[0]))
                    epochs = {r[0]: r[1] for r in await conn.fetch(self._EPOCHS_PG, ids)}
                    _mark(batch, lambda row: stored.get((row[0], row[1])), epochs.get)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            if len(batch) > 1 and isinstance(exc, asyncpg.PostgresError):
                for item in batch:
                    await self._commit([item])
                return
            if isinstance(exc, asyncpg.ForeignKeyViolationError):
                error: TetherError = NotFound(f"run {rows[0][0] if rows else '?'} does not exist")
            else:
                error = Overloaded(f"event append failed, retry: {exc}")
            for item in batch:
                item.error = error
            return
        self.batches += 1
        self.rows_written += written

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        if self._conn is not None:
            await self._conn.close()
