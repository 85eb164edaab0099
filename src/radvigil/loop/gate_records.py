"""Signed gate records: the proof, kept in radvigil's own database, that a version passed its gate.

A record holds the model file's SHA-256, the digest of the card's decision rule (its operating
thresholds, a site's own included: they live in the card, not the graph) and the verdict, with an
HMAC-SHA-256 over them keyed by the audit key (``RADVIGIL_AUDIT_KEY``) and that key's id.
Someone who can write MLflow (or even the database) but does not hold the key cannot make a
version servable, and a model file or threshold changed after gating no longer matches its record.
Records signed before the decision digest existed (no ``decision_sha256``) verify as before.
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
from radvigil.model.card import ModelCard
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


def gate_signature(
    secret: str,
    name: str,
    version: str,
    sha256: str,
    verdict: str,
    decision: str | None = None,
) -> str:
    """HMAC-SHA-256 of the canonical JSON of (name, version, sha256, verdict[, decision])."""
    fields = [name, str(version), sha256, verdict, *([decision] if decision else [])]
    payload = json.dumps(fields, separators=(",", ":"))
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def decision_sha256(card: ModelCard) -> str:
    """SHA-256 of what turns the graph's probabilities into flags: the classes, the findings and
    the operating thresholds (the version's and each site's), in canonical JSON."""
    rule = {
        "classes": list(card.task.classes),
        "findings": list(card.task.findings),
        "thresholds": card.thresholds,
        "site_thresholds": card.site_thresholds,
    }
    text = json.dumps(rule, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
    decision: str | None = None,
) -> GateRecord:
    """Sign and store a gate verdict for the graph at ``onnx_path`` and audit it.

    Args:
        decision: the card's :func:`decision_sha256`, signed with the graph's hash.
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
            signature=gate_signature(audit.secret, name, str(version), sha, verdict, decision),
            decision_sha256=decision,
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
            "decision_sha256": decision,
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
    decision: str | None = None,
) -> GateCheck:
    """Check the newest gate record of a version against the key, the file about to load and
    (``decision``: the card's :func:`decision_sha256`) the thresholds it will flag at.

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
    expected = record_signature(signer, record)
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
    signed = record.decision_sha256
    if signed is not None and not hmac.compare_digest(decision or "", signed):
        return GateCheck(
            False,
            f"{label}'s operating thresholds changed after gating (decision digest "
            f"{(decision or 'none')[:12]}..., signed {signed[:12]}...)",
            record,
        )
    return GateCheck(True, f"{label}: signed gate verdict {record.verdict}", record)


def record_signature(secret: str, record: GateRecord) -> str:
    """The signature ``record`` must carry under ``secret`` (with its decision digest, if any)."""
    return gate_signature(
        secret,
        record.model_name,
        record.version,
        record.sha256,
        record.verdict,
        record.decision_sha256,
    )
