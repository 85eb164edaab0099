"""Audit key ids and signed anchors: which key signed each record, the signed head and the
last verified checkpoint.

Existing records keep ``key_id`` NULL and their original hash (schema version 1, verified
with the key named ``legacy`` in RADVIGIL_AUDIT_KEYS_OLD, else the current key); nothing is
re-signed, so a migration never needs the secret.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
    op.create_table(
        "audit_anchors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_audit_anchors")),
    )


def downgrade() -> None:
    op.drop_table("audit_anchors")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("key_id")
