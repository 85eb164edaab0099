"""PACS pull mode (what was fetched from each source, hashed; checkpoints) and intake counts per AE.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pacs_pulled",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pulled_at", TIMESTAMP, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("sop_key", sa.String(64), nullable=False),
        sa.Column("study_key", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('stored', 'ignored', 'refused')", name=op.f("ck_pacs_pulled_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_pulled")),
        sa.UniqueConstraint("source", "sop_key", name=op.f("uq_pacs_pulled_source")),
    )
    op.create_index(op.f("ix_pacs_pulled_pulled_at"), "pacs_pulled", ["pulled_at"], unique=False)
    op.create_table(
        "pacs_pull_checkpoints",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("since", sa.Date(), nullable=True),
        sa.Column("polled_at", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_pacs_pull_checkpoints")),
    )
    op.create_table(
        "pacs_intake_counts",
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "outcome IN ('stored', 'ignored', 'refused')",
            name=op.f("ck_pacs_intake_counts_outcome"),
        ),
        sa.PrimaryKeyConstraint("calling_ae", "outcome", name=op.f("pk_pacs_intake_counts")),
    )


def downgrade() -> None:
    op.drop_table("pacs_intake_counts")
    op.drop_table("pacs_pull_checkpoints")
    op.drop_table("pacs_pulled")
