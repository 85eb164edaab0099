"""Monitoring: monitor_results (one detector on one window) and alerts (with their state).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types, so later edits to tables.py cannot change this migration.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
ACTIVE = sa.text("state != 'resolved'")


def upgrade() -> None:
    op.create_table(
        "monitor_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("window_kind", sa.String(8), nullable=False),
        sa.Column("window_start", TIMESTAMP, nullable=False),
        sa.Column("window_end", TIMESTAMP, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(200), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("threshold_source", sa.String(16), nullable=True),
        sa.Column("drift", sa.Boolean(), nullable=False),
        sa.Column("effect_size", sa.Float(), nullable=True),
        sa.Column("vetoed", sa.Text(), nullable=True),
        sa.Column("skipped", sa.Text(), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.Column("report_path", sa.String(1000), nullable=True),
        sa.CheckConstraint(
            "window_kind IN ('count', 'time')", name=op.f("ck_monitor_results_window_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_results")),
        sa.UniqueConstraint(
            "model_name",
            "model_version",
            "window_kind",
            "group",
            "window_start",
            "window_end",
            "detector",
            name="uq_monitor_results_window_detector",
        ),
    )
    op.create_index(op.f("ix_monitor_results_detector"), "monitor_results", ["detector"])
    op.create_index(
        "ix_monitor_results_model_window_end",
        "monitor_results",
        ["model_name", "model_version", "window_kind", "window_end"],
    )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("group", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("first_window", sa.Integer(), nullable=True),
        sa.Column("last_window", sa.Integer(), nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
        sa.Column("resolved_by", sa.String(100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('open', 'acknowledged', 'resolved')", name=op.f("ck_alerts_state")
        ),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name=op.f("ck_alerts_severity")
        ),
        sa.ForeignKeyConstraint(
            ["first_window"],
            ["monitor_results.id"],
            name=op.f("fk_alerts_first_window_monitor_results"),
        ),
        sa.ForeignKeyConstraint(
            ["last_window"],
            ["monitor_results.id"],
            name=op.f("fk_alerts_last_window_monitor_results"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_created_at"), "alerts", ["created_at"])
    op.create_index(op.f("ix_alerts_state"), "alerts", ["state"])
    op.create_index(
        "uq_alerts_active_rule_group",
        "alerts",
        ["model_name", "model_version", "rule", "group"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("monitor_results")
