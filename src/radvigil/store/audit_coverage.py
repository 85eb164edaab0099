"""What the audit chain vouches for beyond its own records: digests of the rows it audits.

A ``predict`` record carries the SHA-256 of the prediction's outputs, a ``label`` record the
digest of every feedback field (which prediction it labels included) and a ``key.create``
record the digest of the new ``api_keys`` row. Verification recomputes each digest from the
table, so editing a probability, moving a label to another prediction or inserting an admin
key behind the log shows, even though those tables are not chained themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from radvigil.store.tables import ApiKeyRow, AuditEventRow, FeedbackRow, PredictionRow

PREDICTION_FIELDS = (
    "id",
    "model_name",
    "model_version",
    "probabilities",
    "predicted_class",
    "findings",
    "confidence",
    "warnings",
    "routed_to_review",
    "served_by",
)
FEEDBACK_FIELDS = ("id", "prediction_id", "label", "reviewer", "comment", "policy", "created_at")
API_KEY_FIELDS = ("id", "name", "role", "prefix", "key_hash", "rate_limit", "created_at")
_audit = AuditEventRow.__table__
_BATCH = 500
LABEL_OVERLAP = 100  # label records before a checkpoint an incremental check reads again


def _value(value: Any) -> Any:
    return (
        value.astimezone(UTC).isoformat(timespec="microseconds")
        if isinstance(value, datetime)
        else value
    )


def digest(row: Mapping[str, Any] | Any, fields: tuple[str, ...]) -> str:
    """SHA-256 of the canonical JSON of ``fields`` of a row (mapping or object)."""
    get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
    payload = {name: _value(get(name)) for name in fields}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def prediction_digest(record: Any) -> str:
    return digest(record, PREDICTION_FIELDS)


def feedback_digest(row: Any) -> str:
    return digest(row, FEEDBACK_FIELDS)


def api_key_digest(row: Any) -> str:
    return digest(row, API_KEY_FIELDS)


def _details(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def id_set_digest(ids: Iterable[Any]) -> str:
    """An order-free digest of a set of row ids: the sum of their SHA-256 values mod 2^256.

    Sums combine across batches and prunes, so ``audit verify`` can prove that exactly the
    audited predictions that are gone were removed by recorded prunes (hand-written: no library
    offers an incremental set hash this small).
    """
    total = sum(int(hashlib.sha256(str(i).encode()).hexdigest(), 16) for i in ids)
    return f"{total % (1 << 256):064x}"


def combine_digests(*digests: str) -> str:
    """The digest of the union of disjoint id sets, from their :func:`id_set_digest`."""
    return f"{sum(int(d, 16) for d in digests) % (1 << 256):064x}"


def check_predictions(conn: Connection, after_id: int = 0) -> tuple[int, str] | None:
    """(audit id, reason) for the first audited prediction whose outputs changed since.

    An audited prediction that is gone must have been removed by a recorded prune: read in full
    (``after_id`` 0), the ids of every missing prediction must sum to the digests the ``db.prune``
    records hold; read from a checkpoint, a missing one needs a prune recorded after it.
    """
    prunes = [
        (audit_id, _details(details).get("pruned_predictions"))
        for audit_id, details in conn.execute(
            select(_audit.c.id, _audit.c.details).where(_audit.c.action == "db.prune")
        )
    ]
    query = (
        select(_audit.c.id, _audit.c.object_id, _audit.c.details)
        .where(_audit.c.action == "predict", _audit.c.id > after_id)
        .order_by(_audit.c.id)
    )
    audited = [
        (audit_id, object_id, _details(details).get("outputs_sha256"))
        for audit_id, object_id, details in conn.execute(query)
    ]
    missing: set[str] = set()
    for start in range(0, len(audited), _BATCH):
        batch = audited[start : start + _BATCH]
        rows = conn.execute(
            select(PredictionRow.__table__).where(
                PredictionRow.id.in_([object_id for _, object_id, _ in batch])
            )
        ).mappings()
        stored = {row["id"]: row for row in rows}
        for audit_id, object_id, recorded in batch:
            row = stored.get(object_id)
            if row is None:
                if not any(prune_id > audit_id for prune_id, _ in prunes):
                    return audit_id, f"prediction {object_id} of audit record {audit_id} is gone"
                missing.add(object_id)
                continue
            if recorded and prediction_digest(row) != recorded:  # none before 0007
                return audit_id, (
                    f"prediction {object_id}'s outputs differ from audit record {audit_id}: "
                    "probabilities, findings or flags were edited"
                )
    if after_id == 0 and prunes:
        recorded = combine_digests(*(d for _, d in prunes if isinstance(d, str)))
        if id_set_digest(missing) != recorded:
            return prunes[-1][0], (
                f"{len(missing)} audited predictions are gone, but they are not the set the "
                "recorded prunes removed: rows were deleted behind the log"
            )
    return None


def check_feedback(conn: Connection, after_id: int = 0) -> tuple[int, str] | None:
    """(audit id, reason) for the first feedback row that differs from its audit record.

    Read in full (``after_id`` 0), every feedback row is checked. From a checkpoint, the rows
    from the oldest feedback id that the label records after it, or the last
    :data:`LABEL_OVERLAP` before it, name are checked, so a view costs the new labels only:
    labels given concurrently are audited in either order, and the overlap covers that.
    """
    query = select(_audit.c.id, _audit.c.details).where(_audit.c.action == "label")
    since = None
    if after_id:
        overlap = conn.execute(
            query.where(_audit.c.id <= after_id).order_by(_audit.c.id.desc()).limit(LABEL_OVERLAP)
        ).all()
        since = min((audit_id for audit_id, _ in overlap), default=after_id + 1)
        query = query.where(_audit.c.id >= since)
    audited: dict[int, tuple[int, dict[str, Any]]] = {}
    for audit_id, details in conn.execute(query).all():
        details = _details(details)
        if isinstance(details.get("feedback_id"), int):
            audited[details["feedback_id"]] = (audit_id, details)
    rows = select(FeedbackRow.__table__).order_by(FeedbackRow.id)
    if since is not None and audited:
        rows = rows.where(FeedbackRow.id >= min(audited))
    for row in conn.execute(rows).mappings():
        if row["id"] not in audited:
            return 0, f"feedback {row['id']} has no audit record: inserted behind the log"
        audit_id, details = audited[row["id"]]
        if details.get("label") != row["label"]:
            return audit_id, (
                f"feedback {row['id']}'s label is {row['label']!r} but audit record {audit_id} "
                f"recorded {details.get('label')!r}: the label was edited"
            )
        recorded = details.get("fields_sha256")
        if recorded is not None and feedback_digest(row) != recorded:
            return audit_id, (
                f"feedback {row['id']} differs from audit record {audit_id}: its prediction, "
                "reviewer, comment or time was edited"
            )
    return None


def check_api_keys(conn: Connection) -> tuple[int, str] | None:
    """(audit id, reason) for the first API key row its audit records do not account for."""
    created: dict[str, tuple[int, dict[str, Any]]] = {}
    revoked: set[str] = set()
    query = select(_audit.c.id, _audit.c.action, _audit.c.object_id, _audit.c.details).where(
        _audit.c.action.in_(("key.create", "key.revoke"))
    )
    for audit_id, action, object_id, details in conn.execute(query.order_by(_audit.c.id)):
        if action == "key.create":
            created[str(object_id)] = (audit_id, _details(details))
        else:
            revoked.add(str(object_id))
    for row in conn.execute(select(ApiKeyRow.__table__).order_by(ApiKeyRow.id)).mappings():
        if row["name"] not in created:
            return 0, (
                f"API key {row['name']!r} ({row['role']}) has no audit record: "
                "inserted behind the log"
            )
        audit_id, details = created[row["name"]]
        recorded = details.get("row_sha256")
        legacy_match = all(details.get(k) == row[k] for k in ("role", "prefix", "rate_limit"))
        if (recorded is not None and api_key_digest(row) != recorded) or not legacy_match:
            return audit_id, (
                f"API key {row['name']!r} differs from audit record {audit_id}: its role, "
                "hash or limit was edited"
            )
        if row["name"] in revoked and row["revoked_at"] is None:
            return audit_id, f"API key {row['name']!r} was revoked but is active again"
    return None
