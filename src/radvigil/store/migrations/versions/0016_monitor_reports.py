"""Evidently reports kept in the database, so replicas share one copy instead of each rebuilding it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "monitor_reports",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("html_gzip", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["monitor_results.id"],
            name=op.f("fk_monitor_reports_result_id_monitor_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_monitor_reports")),
    )


def downgrade() -> None:
    op.drop_table("monitor_reports")
