"""Scale indexes: the monitors' incremental selection, traffic, review queue and key pages.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, columns): each read path that must not scan the history.
INDEXES = (
    (
        "ix_predictions_monitor_selection",
        "predictions",
        ["model_name", "model_version", "served_by", "created_at"],
    ),
    ("ix_predictions_served_by_created_at", "predictions", ["served_by", "created_at"]),
    ("ix_predictions_review_queue", "predictions", ["routed_to_review", "created_at", "id"]),
    (
        "ix_monitor_results_group_window_end",
        "monitor_results",
        ["model_name", "model_version", "window_kind", "group", "window_end"],
    ),
)


# The review queue's order key (store/review.py REVIEW_ORDER): most unusual first.
REVIEW_ORDER = ["(-coalesce(ood_score, -1))", "confidence", "created_at", "id"]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    op.create_index(
        "ix_predictions_review_order",
        "predictions",
        [sa.text(REVIEW_ORDER[0]), *REVIEW_ORDER[1:]],
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_review_order", table_name="predictions")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
