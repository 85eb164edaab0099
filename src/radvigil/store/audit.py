"""The audit log: append-only records chained by HMAC-SHA-256, so edits and deletions show.

Each record's hash covers its id, time, fields, details and the previous record's hash, keyed
by a secret from the settings (``RADVIGIL_AUDIT_KEY``): someone who can write the database but
does not hold the secret cannot rewrite a record and recompute the hashes after it.
``verify`` also checks that every label in ``feedback`` matches the audit record made with it.
Ids are assigned by the log itself, gap-free from 1, under a lock: a thread lock in the
process, ``pg_advisory_xact_lock`` on PostgreSQL and ``BEGIN IMMEDIATE`` on SQLite across
processes, and the primary key as the last word (a racing writer's insert fails and retries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.exc import IntegrityError

from radvigil.config import DEV_AUDIT_KEY, get_settings
from radvigil.errors import InputError, StoreError
from radvigil.store.db import Database
from radvigil.store.schemas import AuditCreate, AuditEvent, VerifyResult, utcnow
from radvigil.store.tables import AuditEventRow, FeedbackRow

GENESIS = "0" * 64
AUDIT_LOCK = 7_248_310_002  # pg_advisory_xact_lock key shared by every radvigil process
_RETRIES = 5
# Keys that would put patient identity in the log (compared lower-case, letters/digits only).
PHI_KEYS = frozenset(
    {
        "patientname",
        "patientid",
        "patientbirthdate",
        "birthdate",
        "dateofbirth",
        "dob",
        "patientaddress",
        "mrn",
        "ssn",
        "accessionnumber",
        "studyinstanceuid",
        "seriesinstanceuid",
        "sopinstanceuid",
    }
)
HASHED_FIELDS = (  # what each record's hash covers, in order
    "id",
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "model_version",
    "request_id",
    "details",
    "prev_hash",
)
_table = AuditEventRow.__table__
_append_lock = threading.Lock()


class _ChainMoved(Exception):
    """Another process appended between our read of the head and our insert."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, no NaN: one text for one value, whatever the database."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"audit details must be plain JSON: {exc}") from exc


def record_hash(fields: Mapping[str, Any], secret: str = DEV_AUDIT_KEY) -> str:
    """HMAC-SHA-256 (keyed by ``secret``) of the canonical JSON of a record's fields."""
    payload = {key: fields[key] for key in HASHED_FIELDS}
    payload["created_at"] = fields["created_at"].astimezone(UTC).isoformat(timespec="microseconds")
    return hmac.new(secret.encode(), canonical_json(payload).encode(), hashlib.sha256).hexdigest()


def _prepare(entry: AuditCreate) -> dict[str, Any]:
    """The entry's fields, details checked for PHI and normalised to what reads back."""
    # Round-trip through JSON: what is hashed must be exactly what the database returns.
    fields = entry.model_dump()
    fields["details"] = json.loads(canonical_json(fields["details"]))
    _check_no_phi(fields["details"])
    return fields


def _check_no_phi(value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if re.sub(r"[^a-z0-9]", "", str(key).lower()) in PHI_KEYS:
                raise InputError(f"audit details must not hold patient identifiers ({key!r})")
            _check_no_phi(inner)
    elif isinstance(value, list):
        for inner in value:
            _check_no_phi(inner)


class AuditLog:
    """Appends, lists and verifies audit records.

    Args:
        db: the database.
        clock: where record times come from (a seam for tests).
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        secret: str | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.secret = secret or get_settings().audit_key

    def append(
        self,
        *,
        actor: str,
        action: str,
        object_type: str,
        object_id: str | None = None,
        model_version: str | None = None,
        request_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Add one record at the head of the chain and return it (see :meth:`append_many`)."""
        try:
            entry = AuditCreate(
                actor=actor,
                action=action,
                object_type=object_type,
                object_id=object_id,
                model_version=model_version,
                request_id=request_id,
                details=dict(details or {}),
            )
        except ValidationError as exc:
            raise InputError(f"invalid audit record: {exc.errors()[0]['msg']}") from exc
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditCreate]) -> list[AuditEvent]:
        """Add records in order, in one transaction: all are chained or none is.

        Raises:
            InputError: some ``details`` are not plain JSON or name a patient identifier.
            StoreError: the database failed (StoreUnavailableError when unreachable).
        """
        prepared = [_prepare(entry) for entry in entries]
        if not prepared:
            return []
        with _append_lock:
            for _ in range(_RETRIES):
                try:
                    with self.db.transaction("append audit events", immediate=True) as conn:
                        return self._append(conn, prepared)
                except _ChainMoved:
                    continue
        raise StoreError(f"could not append to the audit log after {_RETRIES} attempts")

    def _append(self, conn: Connection, entries: list[dict[str, Any]]) -> list[AuditEvent]:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
        head = conn.execute(
            select(_table.c.id, _table.c.hash).order_by(_table.c.id.desc()).limit(1)
        ).first()
        last_id, last_hash = (0, GENESIS) if head is None else (head.id, head.hash)
        rows = []
        for fields in entries:
            row = {
                **fields,
                "id": last_id + 1,
                "created_at": self.clock().astimezone(UTC),
                "prev_hash": last_hash,
            }
            row["hash"] = last_hash = record_hash(row, self.secret)
            last_id = row["id"]
            rows.append(row)
        try:
            conn.execute(insert(_table), rows)
        except IntegrityError as exc:
            raise _ChainMoved() from exc
        return [AuditEvent.model_validate(row) for row in rows]

    def list(
        self,
        *,
        limit: int | None = 100,
        action: str | None = None,
        actor: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        newest_first: bool = True,
    ) -> list[AuditEvent]:
        """Records matching the filters, newest first by default."""
        query = select(_table).order_by(_table.c.id.desc() if newest_first else _table.c.id)
        for column, value in (
            (_table.c.action, action),
            (_table.c.actor, actor),
            (_table.c.object_type, object_type),
            (_table.c.object_id, object_id),
        ):
            if value is not None:
                query = query.where(column == value)
        with self.db.transaction("list audit events") as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [AuditEvent.model_validate(dict(row)) for row in rows]

    def verify(self, *, expected_head: str | None = None, batch_size: int = 1000) -> VerifyResult:
        """Walk the chain from record 1 and report the first record that does not fit.

        Args:
            expected_head: a head hash saved earlier; if it is no longer in the chain,
                records were removed from the end or the chain was rewritten.
            batch_size: records read per query.
        """
        checked, prev_id, prev_hash, seen_head = 0, 0, GENESIS, expected_head is None
        with self.db.transaction("verify audit log") as conn:
            while True:
                query = select(_table).where(_table.c.id > prev_id).order_by(_table.c.id)
                try:
                    rows = conn.execute(query.limit(batch_size)).mappings().all()
                except (ValueError, TypeError, KeyError) as exc:  # a value the driver can't read
                    return VerifyResult(
                        ok=False,
                        checked=checked,
                        first_bad_id=prev_id + 1,
                        reason=f"records after {prev_id} cannot be read ({type(exc).__name__}): "
                        "a malformed value was written into the table",
                    )
                if not rows:
                    break
                for row in rows:
                    problem = _check(row, prev_id, prev_hash, self.secret)
                    if problem is not None:
                        bad_id, reason = problem
                        return VerifyResult(
                            ok=False, checked=checked, first_bad_id=bad_id, reason=reason
                        )
                    checked += 1
                    prev_id, prev_hash = row["id"], row["hash"]
                    seen_head = seen_head or row["hash"] == expected_head
            labels = _check_feedback(conn)
        last_id, head = (prev_id, prev_hash) if checked else (None, None)
        if labels is not None:
            return VerifyResult(
                ok=False,
                checked=checked,
                first_bad_id=labels[0],
                reason=labels[1],
                last_id=last_id,
                head_hash=head,
            )
        if not seen_head:
            return VerifyResult(
                ok=False,
                checked=checked,
                first_bad_id=(last_id or 0) + 1,
                reason="the expected head hash is not in the chain: records were removed "
                "from the end or the chain was rewritten",
                last_id=last_id,
                head_hash=head,
            )
        return VerifyResult(ok=True, checked=checked, last_id=last_id, head_hash=head)


def _check_feedback(conn: Connection) -> tuple[int, str] | None:
    """(audit id, reason) for the first feedback label that differs from its audit record."""
    audited: dict[int, tuple[int, str | None]] = {}
    rows = conn.execute(
        select(_table.c.id, _table.c.details).where(_table.c.action == "label")
    ).all()
    for audit_id, details in rows:
        details = details if isinstance(details, dict) else {}
        if isinstance(details.get("feedback_id"), int):
            audited[details["feedback_id"]] = (audit_id, details.get("label"))
    for feedback_id, label in conn.execute(
        select(FeedbackRow.id, FeedbackRow.label).order_by(FeedbackRow.id)
    ).all():
        if feedback_id not in audited:
            return 0, f"feedback {feedback_id} has no audit record: inserted behind the log"
        audit_id, recorded = audited[feedback_id]
        if recorded != label:
            return audit_id, (
                f"feedback {feedback_id}'s label is {label!r} but audit record {audit_id} "
                f"recorded {recorded!r}: the label was edited"
            )
    return None


def _check(
    row: Mapping[str, Any], prev_id: int, prev_hash: str, secret: str
) -> tuple[int, str] | None:
    """The (id, reason) of the first problem with ``row`` following ``prev_id``, if any."""
    if row["id"] != prev_id + 1:
        missing = f"{prev_id + 1}" if row["id"] == prev_id + 2 else f"{prev_id + 1}-{row['id'] - 1}"
        return prev_id + 1, f"record(s) {missing} missing: deleted"
    if row["prev_hash"] != prev_hash:
        return row["id"], (
            f"record {row['id']} does not follow record {prev_id}'s hash: "
            "a record was deleted, reordered or rewritten"
        )
    try:
        matches = hmac.compare_digest(record_hash(row, secret), str(row["hash"]))
    except (AttributeError, TypeError, ValueError, KeyError):
        return row["id"], f"record {row['id']} is malformed (a field has an impossible value)"
    if not matches:
        return row["id"], (
            f"record {row['id']} does not match its hash: edited (or the audit key differs)"
        )
    return None
