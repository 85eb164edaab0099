"""The audit log: append-only records chained by HMAC-SHA-256, so edits and deletions show.

Each record's hash covers its id, time, fields, details, the id of the key that signed it and
the previous record's hash, keyed by a secret from the settings (``RADVIGIL_AUDIT_KEY``):
someone who can write the database but does not hold the secret cannot rewrite a record and
recompute the hashes after it. Keys rotate: records name their key id, and retired keys stay
in ``RADVIGIL_AUDIT_KEYS_OLD`` to verify old records (docs/security.md).

Two signed anchors sit beside the chain: ``head`` moves with every append (same transaction),
so removing records from the end shows; ``verified`` marks where the last verification ended,
so the next one walks only newer records (``full=True`` walks everything). ``verify`` also
recomputes the digests the records keep of predictions, feedback and API keys
(:mod:`radvigil.store.audit_coverage`).
Ids are assigned by the log itself, gap-free from 1, under a lock: a thread lock in the
process, ``pg_advisory_xact_lock`` on PostgreSQL and ``BEGIN IMMEDIATE`` on SQLite across
processes, and the primary key as the last word (a racing writer's insert fails and retries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Connection, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from radvigil.config import DEV_AUDIT_KEY, audit_key_id, get_settings
from radvigil.errors import InputError, StoreError
from radvigil.store.audit_coverage import check_api_keys, check_feedback, check_predictions
from radvigil.store.db import Database
from radvigil.store.schemas import AuditCreate, AuditEvent, VerifyResult, utcnow
from radvigil.store.tables import AuditAnchorRow, AuditEventRow

log = logging.getLogger(__name__)
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
LEGACY_KEY_ID = "legacy"  # RADVIGIL_AUDIT_KEYS_OLD entry for records from before key ids
HASHED_FIELDS = (  # what a version-1 record's hash covers (key_id NULL, before 0007)
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
HASHED_FIELDS_V2 = (*HASHED_FIELDS, "key_id")  # records that name their key
_table = cast(Table, AuditEventRow.__table__)
_anchors = cast(Table, AuditAnchorRow.__table__)
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
    names = HASHED_FIELDS if fields.get("key_id") is None else HASHED_FIELDS_V2
    payload = {key: fields[key] for key in names}
    payload["created_at"] = fields["created_at"].astimezone(UTC).isoformat(timespec="microseconds")
    return hmac.new(secret.encode(), canonical_json(payload).encode(), hashlib.sha256).hexdigest()


def anchor_signature(fields: Mapping[str, Any], secret: str) -> str:
    """HMAC of an anchor's name, record id, head hash and time."""
    payload = {
        "name": fields["name"],
        "last_id": fields["last_id"],
        "head_hash": fields["head_hash"],
        "updated_at": fields["updated_at"].astimezone(UTC).isoformat(timespec="microseconds"),
    }
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
        secret: the signing key (default: ``RADVIGIL_AUDIT_KEY``).
        old_keys: retired keys by id that still verify (default: ``RADVIGIL_AUDIT_KEYS_OLD``).
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        secret: str | None = None,
        old_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.secret = secret or get_settings().audit_key
        self.key_id = audit_key_id(self.secret)
        retired = get_settings().audit_keys_old if old_keys is None else old_keys
        self.keys = {**retired, self.key_id: self.secret}

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
                "key_id": self.key_id,
            }
            row["hash"] = last_hash = record_hash(row, self.secret)
            last_id = row["id"]
            rows.append(row)
        try:
            conn.execute(insert(_table), rows)
        except IntegrityError as exc:
            raise _ChainMoved() from exc
        self._move_anchor(conn, "head", last_id, last_hash)
        return [AuditEvent.model_validate(row) for row in rows]

    def _move_anchor(self, conn: Connection, name: str, last_id: int, head_hash: str) -> None:
        """Point the signed anchor ``name`` at record ``last_id`` (update, else insert)."""
        values = {"name": name, "last_id": last_id, "head_hash": head_hash}
        values |= {"key_id": self.key_id, "updated_at": self.clock().astimezone(UTC)}
        values["signature"] = anchor_signature(values, self.secret)
        moved = conn.execute(update(_anchors).where(_anchors.c.name == name).values(**values))
        if not moved.rowcount:
            conn.execute(insert(_anchors).values(**values))

    def _anchor(self, conn: Connection, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """The anchor ``name`` and, when its signature does not check, why."""
        row = conn.execute(select(_anchors).where(_anchors.c.name == name)).mappings().first()
        if row is None:
            return None, None
        anchor = dict(row)
        secret = self.keys.get(anchor["key_id"])
        if secret is None:
            return anchor, f"the {name} anchor is signed by unknown key id {anchor['key_id']!r}"
        try:
            good = hmac.compare_digest(anchor_signature(anchor, secret), anchor["signature"])
        except (AttributeError, TypeError, ValueError):
            good = False
        return anchor, None if good else f"the signed {name} anchor does not match its signature"

    def list(
        self,
        *,
        limit: int | None = 100,
        action: str | None = None,
        actor: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        newest_first: bool = True,
        after: int | None = None,
    ) -> list[AuditEvent]:
        """Records matching the filters, newest first by default; ``after`` (the previous
        page's last id) continues in that order from the primary key, as cheap as page 1."""
        query = select(_table).order_by(_table.c.id.desc() if newest_first else _table.c.id)
        if after is not None:
            query = query.where(_table.c.id < after if newest_first else _table.c.id > after)
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

    def verify(
        self, *, expected_head: str | None = None, batch_size: int = 1000, full: bool = True
    ) -> VerifyResult:
        """Walk the chain and report the first record that does not fit.

        The walk ends at the signed head (missing records at the end show as truncation).
        With ``full=False`` it starts at the signed ``verified`` checkpoint, when that still
        matches its record, and predictions and labels are cross-checked only after it (labels
        with a small overlap); a successful walk moves the checkpoint. API keys are
        cross-checked in full either way.

        Args:
            expected_head: a head hash saved elsewhere; if it is no longer in the chain,
                records were removed from the end or the chain was rewritten.
            batch_size: records read per query.
            full: walk from record 1 (``radvigil audit verify --full``).
        """
        with self.db.transaction("verify audit log") as conn:
            result = self._verify(conn, expected_head, batch_size, full)
        if result.ok and result.last_id is not None and result.head_hash is not None:
            try:
                with self.db.transaction("move audit checkpoint", immediate=True) as conn:
                    self._move_anchor(conn, "verified", result.last_id, result.head_hash)
            except StoreError as exc:  # a racing verifier moved it first: the result stands
                log.info("audit checkpoint not moved: %s", exc.message)
        return result

    def _verify(
        self, conn: Connection, expected_head: str | None, batch_size: int, full: bool
    ) -> VerifyResult:
        head, head_problem = self._anchor(conn, "head")
        if head_problem is not None:
            return VerifyResult(ok=False, checked=0, reason=head_problem)
        # A saved head may lie before the checkpoint: look for it in a full walk.
        full = full or expected_head is not None
        start_id, start_hash = (0, GENESIS) if full else self._start(conn)
        checked, prev_id, prev_hash = 0, start_id, start_hash
        seen_head = expected_head is None
        while True:
            query = select(_table).where(_table.c.id > prev_id).order_by(_table.c.id)
            try:
                rows = conn.execute(query.limit(batch_size)).mappings().all()
            except (ValueError, TypeError, KeyError) as exc:  # a value the driver can't read
                return VerifyResult(
                    ok=False,
                    checked=checked,
                    first_bad_id=prev_id + 1,
                    from_id=start_id,
                    reason=f"records after {prev_id} cannot be read ({type(exc).__name__}): "
                    "a malformed value was written into the table",
                )
            if not rows:
                break
            for row in rows:
                problem = _check(dict(row), prev_id, prev_hash, self.keys)
                if problem is not None:
                    bad_id, reason = problem
                    return VerifyResult(
                        ok=False,
                        checked=checked,
                        first_bad_id=bad_id,
                        reason=reason,
                        from_id=start_id,
                    )
                checked += 1
                prev_id, prev_hash = row["id"], row["hash"]
                seen_head = seen_head or row["hash"] == expected_head
        last_id, last_hash = (prev_id, prev_hash) if prev_id else (None, None)
        signed_records = (
            head is None
            and conn.execute(
                select(_table.c.id).where(_table.c.key_id.is_not(None)).limit(1)
            ).first()
            is not None
        )
        problem = (
            _head_problem(head, prev_id, prev_hash, signed_records)
            or check_feedback(conn, start_id)
            or check_predictions(conn, start_id)
            or check_api_keys(conn)
        )
        if problem is None and not seen_head:
            problem = (
                (last_id or 0) + 1,
                "the expected head hash is not in the chain: records were removed "
                "from the end or the chain was rewritten",
            )
        if problem is not None:
            return VerifyResult(
                ok=False,
                checked=checked,
                first_bad_id=problem[0],
                reason=problem[1],
                last_id=last_id,
                head_hash=last_hash,
                from_id=start_id,
            )
        return VerifyResult(
            ok=True, checked=checked, last_id=last_id, head_hash=last_hash, from_id=start_id
        )

    def _start(self, conn: Connection) -> tuple[int, str]:
        """Where an incremental walk starts: the verified checkpoint if it still holds."""
        anchor, problem = self._anchor(conn, "verified")
        if anchor is None or problem is not None:
            return 0, GENESIS
        row = (
            conn.execute(select(_table).where(_table.c.id == anchor["last_id"])).mappings().first()
        )
        if row is None or row["hash"] != anchor["head_hash"]:
            return 0, GENESIS
        if _check(dict(row), row["id"] - 1, row["prev_hash"], self.keys) is not None:
            return 0, GENESIS
        return row["id"], row["hash"]


def _head_problem(
    head: Mapping[str, Any] | None, last_id: int, last_hash: str, signed_records: bool
) -> tuple[int, str] | None:
    """(record id, reason) when the chain does not end at the signed head."""
    if head is None:
        if signed_records:
            return last_id + 1, "the signed head is missing: it was deleted"
        return None  # a chain from before 0007 that no append has anchored yet
    if last_id < head["last_id"]:
        return last_id + 1, (
            f"the chain ends at record {last_id} but the signed head is record "
            f"{head['last_id']}: records were removed from the end"
        )
    if last_id > head["last_id"] or last_hash != head["head_hash"]:
        return head["last_id"] + 1, (
            f"the chain does not end at the signed head (record {head['last_id']}): "
            "records were added or rewritten behind the log"
        )
    return None


def _check(
    row: Mapping[str, Any], prev_id: int, prev_hash: str, keys: Mapping[str, str]
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
    key_id = row.get("key_id")
    secret = keys.get(LEGACY_KEY_ID if key_id is None else key_id)
    if secret is None and key_id is None:
        secret = keys[list(keys)[-1]]  # the current key signed the pre-0007 records
    if secret is None:
        return row["id"], (
            f"record {row['id']} is signed by key id {key_id!r}, which is not configured "
            "(add it to RADVIGIL_AUDIT_KEYS_OLD)"
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
