"""Gate records sign the card's decision rule: the SHA-256 of a version's classes, findings and
operating thresholds (a site's own included), which live in the model card, not in the graph, so
a threshold edited in the artifact store after gating no longer verifies. Older records keep a
NULL digest and verify as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gate_records") as batch:
        batch.add_column(sa.Column("decision_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gate_records") as batch:
        batch.drop_column("decision_sha256")
