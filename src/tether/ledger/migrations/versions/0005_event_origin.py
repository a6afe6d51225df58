"""Events a hosted agent sent keep their runner's number for them (``run_events.origin``).

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


def downgrade() -> None:
    with op.batch_alter_table("run_events") as batch:
        batch.drop_column("origin")
