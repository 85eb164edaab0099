"""Notes: one patient note per prediction, a draft until a clinician approves it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("template_text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rewriter", sa.String(200), nullable=True),
        sa.Column("fallback_reason", sa.Text(), nullable=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("grade", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("generated_by", sa.String(100), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("approved_by", sa.String(100), nullable=True),
        sa.Column("approved_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("status IN ('draft', 'approved')", name=op.f("ck_notes_status")),
        sa.CheckConstraint(
            "source IN ('template', 'rewrite', 'clinician')", name=op.f("ck_notes_source")
        ),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_notes_prediction_id_predictions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
        sa.UniqueConstraint("prediction_id", name=op.f("uq_notes_prediction_id")),
    )
    op.create_index(op.f("ix_notes_status"), "notes", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_notes_status"), table_name="notes")
    op.drop_table("notes")
