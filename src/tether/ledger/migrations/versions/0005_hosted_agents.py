"""Hosted agents: events keep their runner's number for them (``run_events.origin``), and
sessions their agent's thread and how to continue it in a terminal.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_events") as batch:
        batch.add_column(sa.Column("origin", sa.Integer(), nullable=True))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("agent_thread", sa.String(200), nullable=True))
        batch.add_column(sa.Column("agent_resume", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("agent_resume")
        batch.drop_column("agent_thread")
    with op.batch_alter_table("run_events") as batch:
        batch.drop_column("origin")
