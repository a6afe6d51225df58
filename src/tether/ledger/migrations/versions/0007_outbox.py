"""The outbox: deliveries are leased by the gateway sending them, and a run's status
message is a chain of deliveries (``status_of``) edited in place.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(200), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("status_of", sa.String(64), nullable=True))
    op.create_index(
        "ix_deliveries_conversation_id_state", "deliveries", ["conversation_id", "state"]
    )
    op.create_index("ix_deliveries_status_of", "deliveries", ["status_of"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_of", "deliveries")
    op.drop_index("ix_deliveries_conversation_id_state", "deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("status_of")
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
