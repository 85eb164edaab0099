"""PACS actions shared by the dashboard and the CLI: dead-lettered results back in the queue."""

from __future__ import annotations

from collections.abc import Sequence

from radvigil.store.audit import AuditLog
from radvigil.store.pacs import PacsStore


def retry_dead_letters(store: PacsStore, audit: AuditLog, actor: str, ids: Sequence[int]) -> int:
    """Re-queue dead-lettered outbox rows (all, or ``ids``) and audit who did it; the count."""
    count = store.retry(ids)
    object_id = str(ids[0]) if len(ids) == 1 else f"{len(ids)} rows" if ids else "all"
    audit.append(
        actor=actor,
        action="pacs_retry",
        object_type="pacs_outbox",
        object_id=object_id,
        details={"requeued": count, "ids": list(ids) or "all dead-lettered"},
    )
    return count
