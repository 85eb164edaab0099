"""Signed gate records: the proof, kept in radvigil's own database, that a version passed its gate.

A record holds the model file's SHA-256 and the verdict, with an HMAC-SHA-256 over
(name, version, sha256, verdict) keyed by the audit key (``RADVIGIL_AUDIT_KEY``) and that key's
id. Someone who can write MLflow (or even the database) but does not hold the key cannot make
a version servable, and a model file replaced after gating no longer matches its record.
Every path that records a gate verdict (``radvigil gate``, retraining, the demo, imports of
outside models) calls :func:`sign_gate`; serving calls :func:`verify_gate` before loading.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from radvigil.config import audit_key_id
from radvigil.store import AuditLog
from radvigil.store.db import Database
from radvigil.store.deployments import GateRecord, GateRecordCreate, GateRecordStore, GateVerdict

SERVABLE = frozenset({"passed", "forced"})  # "forced": a person moved it past a gate, audited
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks (ONNX graphs can be hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def key_id(secret: str) -> str:
    """The audit key's public id, the same one audit records carry (see ``audit_key_id``)."""
    return audit_key_id(secret)


def gate_signature(secret: str, name: str, version: str, sha256: str, verdict: str) -> str:
    """HMAC-SHA-256 of the canonical JSON of (name, version, sha256, verdict)."""
    payload = json.dumps([name, str(version), sha256, verdict], separators=(",", ":"))
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def criteria_hash(criteria: BaseModel | dict[str, Any] | None) -> str:
    """SHA-256 of the gate criteria the verdict was reached under ("" when none applied)."""
    if criteria is None:
        return ""
    data = criteria.model_dump(mode="json") if isinstance(criteria, BaseModel) else criteria
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sign_gate(
    db: Database,
    audit: AuditLog,
    *,
    name: str,
    version: str,
    onnx_path: Path,
    verdict: GateVerdict,
    criteria: str,
    actor: str,
    precision: str = "fp32",
) -> GateRecord:
    """Sign and store a gate verdict for the graph at ``onnx_path`` and audit it.

    Args:
        criteria: the hash of the criteria (:func:`criteria_hash`), or a short label such as
            ``"imported"`` for verdicts reached outside ``radvigil gate``.
        precision: which graph of the version was judged (``fp32`` or ``int8``).
    """
    sha = file_sha256(onnx_path)
    record = GateRecordStore(db).add(
        GateRecordCreate(
            model_name=name,
            version=str(version),
            precision=precision,
            sha256=sha,
            verdict=verdict,
            criteria_hash=criteria[:64],
            actor=actor,
            key_id=key_id(audit.secret),
            signature=gate_signature(audit.secret, name, str(version), sha, verdict),
        )
    )
    audit.append(
        actor=actor,
        action="gate.signed",
        object_type="model_version",
        object_id=f"{name}/{version}",
        model_version=f"{name}/{version}",
        details={
            "verdict": verdict,
            "sha256": sha,
            "precision": precision,
            "criteria_hash": record.criteria_hash,
            "key_id": record.key_id,
            "gate_record": record.id,
        },
    )
    return record


@dataclass(frozen=True)
class GateCheck:
    """Whether a version's graph may serve, and if not, why (safe to log: no PHI)."""

    ok: bool
    reason: str
    record: GateRecord | None = None


def verify_gate(
    db: Database,
    secret: str,
    *,
    name: str,
    version: str,
    onnx_path: Path,
    precision: str = "fp32",
    old_keys: Mapping[str, str] | None = None,
) -> GateCheck:
    """Check the newest gate record of a version against the key and the file about to load.

    ``old_keys`` (retired audit keys by id, ``RADVIGIL_AUDIT_KEYS_OLD``) still verify records
    signed before a rotation.
    """
    record = GateRecordStore(db).latest(name, str(version), precision)
    label = f"{name}/{version} ({precision})"
    if record is None:
        return GateCheck(False, f"{label} has no signed gate record")
    keys = {**(old_keys or {}), key_id(secret): secret}
    if record.key_id not in keys:
        return GateCheck(
            False,
            f"{label}'s gate record is signed with key {record.key_id}, not this service's "
            f"key {key_id(secret)} or a retired one",
            record,
        )
    signer = keys[record.key_id]
    expected = gate_signature(signer, name, str(version), record.sha256, record.verdict)
    if not hmac.compare_digest(expected, record.signature):
        return GateCheck(False, f"{label}'s gate record has an invalid signature", record)
    if record.verdict not in SERVABLE:
        return GateCheck(False, f"{label}'s signed gate verdict is {record.verdict}", record)
    actual = file_sha256(onnx_path)
    if not hmac.compare_digest(actual, record.sha256):
        return GateCheck(
            False,
            f"{label}'s model file changed after gating (SHA-256 {actual[:12]}..., signed "
            f"{record.sha256[:12]}...)",
            record,
        )
    return GateCheck(True, f"{label}: signed gate verdict {record.verdict}", record)
