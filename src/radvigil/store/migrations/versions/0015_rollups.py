"""Rollup tables: predictions and latency per hour, latest labels per day (pages at scale).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

The backfill runs :func:`radvigil.store.rollups.rebuild`, the same SQL as
``radvigil db rebuild-rollups``, so the counts a migrated database starts from are exactly
those the writer would have kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from radvigil.store.rollups import rebuild

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns() -> list[sa.Column[str]]:
    """The model, version, site and class columns both counting tables are keyed by."""
    return [
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("predicted_class", sa.String(100), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "prediction_hours",
        sa.Column("hour", sa.Integer(), nullable=False, autoincrement=False),
        *_columns(),
        sa.Column("served_by", sa.String(16), nullable=False),
        sa.Column("routed_to_review", sa.Boolean(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour",
            "model_name",
            "model_version",
            "site",
            "predicted_class",
            "served_by",
            "routed_to_review",
            name=op.f("pk_prediction_hours"),
        ),
    )
    op.create_table(
        "latency_hours",
        sa.Column("hour", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("bin", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "bin", name=op.f("pk_latency_hours")),
    )
    op.create_table(
        "label_days",
        sa.Column("day", sa.Integer(), nullable=False, autoincrement=False),
        *_columns(),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "model_name",
            "model_version",
            "site",
            "predicted_class",
            "label",
            name=op.f("pk_label_days"),
        ),
    )
    rebuild(op.get_bind())


def downgrade() -> None:
    for table in ("label_days", "latency_hours", "prediction_hours"):
        op.drop_table(table)
