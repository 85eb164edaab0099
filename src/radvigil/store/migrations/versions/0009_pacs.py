"""PACS: received radiographs (hashed UIDs) and the outbox of result objects to deliver.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pacs_instances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sop_key", sa.String(64), nullable=False),
        sa.Column("study_key", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("site", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("prediction_id", sa.String(64), nullable=True),
        sa.CheckConstraint(
            "state IN ('predicted', 'refused')", name=op.f("ck_pacs_instances_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_instances")),
        sa.UniqueConstraint("sop_key", "model_version", name=op.f("uq_pacs_instances_sop_key")),
    )
    op.create_index(
        op.f("ix_pacs_instances_created_at"), "pacs_instances", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_pacs_instances_study_key"), "pacs_instances", ["study_key"], unique=False
    )
    op.create_table(
        "pacs_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("prediction_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("file", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'dead')", name=op.f("ck_pacs_outbox_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_outbox")),
        sa.UniqueConstraint(
            "sop_instance_uid", "destination", name=op.f("uq_pacs_outbox_sop_instance_uid")
        ),
    )
    for column in ("created_at", "prediction_id", "state", "next_attempt_at"):
        op.create_index(op.f(f"ix_pacs_outbox_{column}"), "pacs_outbox", [column], unique=False)


def downgrade() -> None:
    op.drop_table("pacs_outbox")
    op.drop_table("pacs_instances")
