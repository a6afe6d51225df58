"""Conversations: channel identities linked to users (and pairing codes), each
conversation's current session, and inbound receipts that keep the message until it is
processed.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("pair_code_hash", sa.String(128), nullable=True))
        batch.add_column(sa.Column("pair_expires_at", sa.Float(), nullable=True))
    op.create_table(
        "identities",
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_identities_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel", "external_id", name="pk_identities"),
    )
    op.create_index("ix_identities_user_id", "identities", ["user_id"])
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("session_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="p2p"))
        batch.add_column(sa.Column("lang", sa.String(8), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.Float(), nullable=True))
    with op.batch_alter_table("inbound_receipts") as batch:
        batch.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
    op.create_index(
        "ix_inbound_receipts_status_received_at", "inbound_receipts", ["status", "received_at"]
    )
    op.create_index("ix_inbound_receipts_run_id", "inbound_receipts", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_inbound_receipts_run_id", "inbound_receipts")
    op.drop_index("ix_inbound_receipts_status_received_at", "inbound_receipts")
    with op.batch_alter_table("inbound_receipts") as batch:
        for name in ("detail", "updated_at", "claimed_at", "claimed_by", "message"):
            batch.drop_column(name)
    with op.batch_alter_table("conversations") as batch:
        for name in ("updated_at", "lang", "kind", "session_id"):
            batch.drop_column(name)
    op.drop_index("ix_identities_user_id", "identities")
    op.drop_table("identities")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("pair_expires_at")
        batch.drop_column("pair_code_hash")
