"""The change-control record of a promotion or rollback (HTML + JSON), in the shape of an FDA
"predetermined change control plan" modification record: what changed, why, how it was
verified, who approved it and when, and how to undo it.

Written under the home, logged to the new serving version's MLflow run, and referenced by its
SHA-256 in the audit record of the move, so the evidence cannot be swapped afterwards unnoticed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from radvigil.errors import RadvigilError
from radvigil.registry import Registry


class ChangeRecord(BaseModel):
    """One modification record."""

    model: str
    action: str  # promote | rollback
    from_version: str | None
    to_version: str
    approved_by: str
    approved_at: str
    why: str
    config_diff: dict[str, list[str | None]]
    data: dict[str, Any]
    verification: dict[str, Any]
    rollback_plan: str


def _version_facts(registry: Registry, name: str, version: str | None) -> dict[str, Any]:
    """Tags and run parameters of a version (empty when there is none or it cannot be read)."""
    if version is None:
        return {"tags": {}, "params": {}}
    try:
        mv = registry.resolve(f"{name}/{version}")
        params = dict(registry.run(mv.run_id).params) if mv.run_id else {}
    except RadvigilError as exc:
        return {"tags": {}, "params": {}, "error": exc.message}
    return {"tags": mv.radvigil_tags, "params": params, "run_id": mv.run_id}


def build(
    registry: Registry,
    name: str,
    action: str,
    from_version: str | None,
    to_version: str,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> ChangeRecord:
    """Assemble the record from the registry (tags, run params) and ``evidence`` (shadow etc.)."""
    old, new = (
        _version_facts(registry, name, from_version),
        _version_facts(registry, name, to_version),
    )
    keys = sorted(set(old["params"]) | set(new["params"]))
    diff = {
        k: [old["params"].get(k), new["params"].get(k)]
        for k in keys
        if old["params"].get(k) != new["params"].get(k)
    }
    tags = new["tags"]
    gate = tags.get("gate")
    verification: dict[str, Any] = {
        "gate": json.loads(gate) if gate else None,
        "rollout_steps": {k: tags[k] for k in ("shadow", "canary") if k in tags},
        **(evidence or {}),
    }
    return ChangeRecord(
        model=name,
        action=action,
        from_version=from_version,
        to_version=to_version,
        approved_by=actor,
        approved_at=datetime.now(UTC).isoformat(timespec="seconds"),
        why=reason,
        config_diff=diff,
        data={
            "from_data_version": old["tags"].get("data_version"),
            "to_data_version": tags.get("data_version"),
            "labelled_cases_added": tags.get("feedback_ids", "").count(",") + 1
            if tags.get("feedback_ids")
            else 0,
            "parent_version": tags.get("parent_version"),
        },
        verification=verification,
        rollback_plan=(
            f"`radvigil rollout rollback --reason ...` (or POST /v1/admin/rollout/rollback) "
            f"serves version {from_version} again within one registry poll"
            if from_version
            else "no earlier version: reject or retrain"
        ),
    )


def write(record: ChangeRecord, folder: Path) -> tuple[Path, Path, str]:
    """Write the record as ``change-<action>-v<version>-<time>.json/.html``; return both and
    the JSON's SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"change-{record.action}-v{record.to_version}-{record.approved_at.replace(':', '')}"
    js = folder / f"{stem}.json"
    js.write_text(record.model_dump_json(indent=2))
    html = folder / f"{stem}.html"
    html.write_text(_html(record))
    return js, html, hashlib.sha256(js.read_bytes()).hexdigest()


def _html(record: ChangeRecord) -> str:
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td><pre>{escape(json.dumps(v, indent=1, default=str))}</pre>"
        "</td></tr>"
        for k, v in record.model_dump().items()
    )
    title = f"{record.model}: {record.action} to version {record.to_version}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        "</head><body><h1>Change-control record</h1>"
        f"<h2>{escape(title)}</h2><table>{rows}</table></body></html>"
    )


def file_record(registry: Registry, record: ChangeRecord, folder: Path) -> dict[str, str]:
    """Write the record, log it to the new version's run; the audit details that point at it."""
    js, html, digest = write(record, folder)
    run_id = _version_facts(registry, record.model, record.to_version).get("run_id")
    if run_id:
        for path in (js, html):
            registry.log_artifact(run_id, path, "change_control")
    return {"change_record": js.name, "change_record_sha256": digest}
