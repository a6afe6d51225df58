"""Routines: cron schedules that start a run in a session as their owner, with the next
due time kept in the ledger.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routines",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("next_fire_at", sa.Float(), nullable=True),
        sa.Column("last_fired_at", sa.Float(), nullable=True),
        sa.Column("last_run_id", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_routines"),
        sa.UniqueConstraint("name", name="uq_routines_name"),
    )
    op.create_index("ix_routines_state_next_fire_at", "routines", ["state", "next_fire_at"])
    op.create_index("ix_routines_session_id", "routines", ["session_id"])
    op.create_index("ix_routines_owner", "routines", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_routines_owner", "routines")
    op.drop_index("ix_routines_session_id", "routines")
    op.drop_index("ix_routines_state_next_fire_at", "routines")
    op.drop_table("routines")
