"""The whole current schema, in one place (SQLAlchemy Core metadata).

Alembic migrations in ``tether/ledger/migrations`` produce exactly this schema; a test
compares the two on SQLite and PostgreSQL. Times are seconds since the epoch (float),
JSON is stored as text written by msgspec, ids are time-ordered strings
(``tether.types.new_id``).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from tether.ledger.states import ACTIVE

__all__ = [
    "ACTIVE_STATES",
    "approvals",
    "artifacts",
    "conversations",
    "deliveries",
    "identities",
    "inbound_receipts",
    "metadata",
    "routines",
    "run_events",
    "runners",
    "runs",
    "session_rules",
    "sessions",
    "tool_calls",
    "users",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ACTIVE_STATES = tuple(s.value for s in sorted(ACTIVE))
_ACTIVE_SQL = f"state IN ({', '.join(repr(s) for s in ACTIVE_STATES)})"

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(16), nullable=False, server_default="member"),
    Column("token_hash", String(128), nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("pair_code_hash", String(128), nullable=True),
    Column("pair_expires_at", Float, nullable=True),
)

identities = Table(
    "identities",
    metadata,
    Column("channel", String(32), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("channel", "external_id"),
    Index(None, "user_id"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(400), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("chat_id", String(200), nullable=False),
    Column("thread", String(200), nullable=True),
    Column("title", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("session_id", String(64), nullable=True),
    Column("kind", String(16), nullable=False, server_default="p2p"),
    Column("lang", String(8), nullable=True),
    Column("updated_at", Float, nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("conversation_id", String(400), ForeignKey("conversations.id"), nullable=True),
    Column("agent", String(64), nullable=False),
    Column("runner_id", String(64), nullable=True),
    Column("workspace", String(200), nullable=True),
    Column("policy", Text, nullable=False, server_default="{}"),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("mode", String(16), nullable=False, server_default="ask"),
    Column("agent_thread", String(200), nullable=True),
    Column("agent_resume", Text, nullable=True),
    Column("created_by", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "conversation_id", "status"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("session_id", String(64), ForeignKey("sessions.id"), nullable=False),
    Column("agent", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("input", Text, nullable=False),
    Column("output", Text, nullable=True),
    Column("created_by", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("cancel_requested_at", Float, nullable=True),
    Column("authorization", Text, nullable=True),
    Index(None, "state", "id"),
    Index(None, "session_id", "id"),
    Index(None, "state", "lease_expires_at"),
    # One active run per session, enforced by the database on both engines.
    Index(
        "uq_runs_one_active_per_session",
        "session_id",
        unique=True,
        sqlite_where=text(_ACTIVE_SQL),
        postgresql_where=text(_ACTIVE_SQL),
    ),
)

run_events = Table(
    "run_events",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("origin", Integer, nullable=True),
    # ``origin``: for an event a hosted agent sent, its runner's number for it (1, 2, ...
    # per run), so a gateway that restarts knows exactly which of them it already has.
    # A rowid table (not WITHOUT ROWID): rows of ~500 bytes append 2.5x faster this way.
    PrimaryKeyConstraint("run_id", "seq"),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
    Column("runner_id", String(64), nullable=False),
    Column("tool", String(64), nullable=False),
    Column("args", Text, nullable=False),
    Column("args_sha256", String(64), nullable=False),
    Column("workspace", String(200), nullable=True),
    Column("state", String(16), nullable=False),
    Column("decision", String(16), nullable=True),
    Column("token_id", String(64), nullable=True),
    Column("result", Text, nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("error", Text, nullable=True),
    Column("requested_by", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("rule", Text, nullable=True),
    Column("request_id", String(64), nullable=True),
    Index(None, "run_id"),
    Index(None, "runner_id", "state"),
)

_OPEN_SQL = "state = 'open'"

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
    Column("call_id", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("approvers", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("decision", String(32), nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_at", Float, nullable=True),
    Column("session_id", String(64), nullable=True),
    Column("handle", String(16), nullable=False),
    Column("tool", String(64), nullable=True),
    Column("args_sha256", String(64), nullable=True),
    Column("plan", Text, nullable=False, server_default="{}"),
    Column("choices", Text, nullable=False, server_default="[]"),
    Column("answer", Text, nullable=True),
    Column("created_by", String(200), nullable=True),
    Index(None, "run_id"),
    Index(None, "state", "expires_at"),
    # A short handle names one open request of its session.
    Index(
        "uq_approvals_open_handle",
        "session_id",
        "handle",
        unique=True,
        sqlite_where=text(_OPEN_SQL),
        postgresql_where=text(_OPEN_SQL),
    ),
)

session_rules = Table(
    "session_rules",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("session_id", String(64), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("rule", Text, nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Index(None, "session_id"),
)

runners = Table(
    "runners",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("credential_hash", String(128), nullable=True),
    Column("enrol_code_hash", String(128), nullable=True),
    Column("enrol_expires_at", Float, nullable=True),
    Column("version", String(64), nullable=True),
    Column("info", Text, nullable=False, server_default="{}"),
    Column("created_at", Float, nullable=False),
    Column("enrolled_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("last_seen_at", Float, nullable=True),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("conversation_id", String(400), nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=True),
    Column("platform_message_id", String(200), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("status_of", String(64), nullable=True),
    Index(None, "state", "next_attempt_at"),
    Index(None, "conversation_id", "state"),
    Index(None, "status_of"),
)

inbound_receipts = Table(
    "inbound_receipts",
    metadata,
    Column("channel", String(32), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("message_id", String(200), nullable=True),
    Column("conversation_id", String(400), nullable=True),
    Column("status", String(16), nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("received_at", Float, nullable=False),
    Column("message", Text, nullable=True),
    Column("claimed_by", String(200), nullable=True),
    Column("claimed_at", Float, nullable=True),
    Column("updated_at", Float, nullable=True),
    Column("detail", Text, nullable=True),
    PrimaryKeyConstraint("channel", "event_id"),
    Index(None, "status", "received_at"),
    Index(None, "run_id"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Index(None, "expires_at"),
    Index(None, "run_id"),
)

routines = Table(
    "routines",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("owner", String(200), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("cron", String(200), nullable=False),
    Column("tz", String(64), nullable=False),
    Column("input", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("catch_up", String(16), nullable=False),
    Column("next_fire_at", Float, nullable=True),
    Column("last_fired_at", Float, nullable=True),
    Column("last_run_id", String(64), nullable=True),
    Column("source", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "state", "next_fire_at"),
    Index(None, "session_id"),
    Index(None, "owner"),
)
"""Scheduled runs: a cron schedule in a zone that starts a run in its session, as its
owner. ``next_fire_at`` is advanced by compare-and-set after the firing's receipt."""
