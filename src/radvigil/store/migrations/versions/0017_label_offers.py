"""Label offers: which policy offered a case in a site's budgeted queue, kept when it is offered,
so the label records that policy even after the queue has moved on (the queue is recomputed as
labels are spent, and a case offered earlier may no longer be in it when it is labelled).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "label_offers",
        sa.Column("prediction_id", sa.String(64), nullable=False),
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("why", sa.Text(), nullable=True),
        sa.Column("offered_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_label_offers_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_label_offers")),
    )


def downgrade() -> None:
    op.drop_table("label_offers")
