"""Registry trust: signed gate records and radvigil's own deployment state and events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("precision", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("criteria_hash", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(64), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('passed', 'failed', 'forced')", name=op.f("ck_gate_records_verdict")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_records")),
    )
    op.create_index(
        "ix_gate_records_model_version", "gate_records", ["model_name", "version", "precision"]
    )
    op.create_table(
        "deployment_state",
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("champion", sa.String(64), nullable=True),
        sa.Column("challenger", sa.String(64), nullable=True),
        sa.Column("previous", sa.String(64), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("canary_share", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "mode IN ('off', 'shadow', 'canary')", name=op.f("ck_deployment_state_mode")
        ),
        sa.CheckConstraint(
            "canary_share >= 0 AND canary_share <= 0.5",
            name=op.f("ck_deployment_state_canary_share"),
        ),
        sa.PrimaryKeyConstraint("model_name", name=op.f("pk_deployment_state")),
    )
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_events")),
    )
    op.create_index(op.f("ix_deployment_events_created_at"), "deployment_events", ["created_at"])
    op.create_index(op.f("ix_deployment_events_model_name"), "deployment_events", ["model_name"])


def downgrade() -> None:
    op.drop_table("deployment_events")
    op.drop_table("deployment_state")
    op.drop_table("gate_records")
