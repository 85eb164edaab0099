"""API key role `metrics`: reads /metrics and /ready and nothing else (the Prometheus scrape key).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "role IN ('clinician', 'admin', 'auditor', 'service')"
NEW = "role IN ('clinician', 'admin', 'auditor', 'service', 'metrics')"


def _replace(condition: str) -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f("ck_api_keys_role"), type_="check")
        batch.create_check_constraint("role", condition)


def upgrade() -> None:
    _replace(NEW)


def downgrade() -> None:
    op.execute("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE role = 'metrics'")
    op.execute("UPDATE api_keys SET role = 'auditor' WHERE role = 'metrics'")
    _replace(OLD)
