"""Model versions as the dashboard shows them: aliases, gate verdicts, lineage, alias history.

Read through the service's registry (``state.models.registry``); a registry that cannot be
reached leaves the rest of a page working, with the problem named.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from radvigil.service.lifecycle import ServedModel
from radvigil.service.state import ServiceState

log = logging.getLogger(__name__)


def _problem(what: str, exc: Exception) -> str:
    log.warning("dashboard: %s failed: %s", what, exc)
    return f"the model registry could not be read ({what}): {exc}"


def alias_history(state: ServiceState) -> tuple[list[dict[str, Any]], str | None]:
    """Alias events (oldest first) and an error message when the registry failed."""
    try:
        return state.models.registry.alias_history(state.settings.model_name), None
    except Exception as exc:  # MLflow raises its own exception types, not only ours
        return [], _problem("alias history", exc)


def promoted(history: list[dict[str, Any]], alias: str, version: str) -> dict[str, Any] | None:
    """The latest event that pointed ``alias`` at ``version``, if the history has one."""
    for event in reversed(history):
        if event.get("alias") == alias and str(event.get("version")) == str(version):
            return event
    return None


def served_summary(served: ServedModel, history: list[dict[str, Any]]) -> dict[str, Any]:
    card = served.card
    event = promoted(history, served.alias, served.version) or {}
    return {
        "alias": served.alias,
        "name": served.name,
        "version": served.version,
        "task": card["task"]["name"],
        "classes": served.classes,
        "data_version": card.get("training_data_version"),
        "loaded_at": served.loaded_at,
        "since": event.get("time"),
        "by": event.get("actor"),
        "reason": event.get("reason"),
        "has_profile": served.profile is not None,
    }


def gate(tags: dict[str, str]) -> dict[str, Any]:
    """The gate verdict tag as ``{"state": passed|failed|none, "failed": [...]}``."""
    raw = tags.get("radvigil.gate")
    if not raw:
        return {"state": "none", "failed": []}
    try:
        verdict = json.loads(raw)
    except json.JSONDecodeError:
        return {"state": "unreadable", "failed": [raw[:200]]}
    return {
        "state": "passed" if verdict.get("passed") else "failed",
        "failed": list(verdict.get("failed") or []),
    }


def _step(tags: dict[str, str]) -> list[dict[str, str]]:
    """Rollout steps recorded on a version (``radvigil.shadow``, ``radvigil.promoted``, ...)."""
    steps = []
    for key in ("shadow", "canary", "promoted", "rejected", "rolled_back"):
        raw = tags.get(f"radvigil.{key}")
        if raw:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = {"reason": raw}
            steps.append({"step": key.replace("_", " "), **{k: str(v) for k, v in value.items()}})
    return steps


def versions(state: ServiceState) -> tuple[list[dict[str, Any]], str | None]:
    """Every version of the served model, newest first, with aliases and lineage."""
    registry, name = state.models.registry, state.settings.model_name
    try:
        aliases: dict[str, list[str]] = {}
        for model in registry.registered_models():
            if model.name == name:
                for alias, version in model.aliases.items():
                    aliases.setdefault(str(version), []).append(alias)
        found = registry.versions(name)
    except Exception as exc:  # as above
        return [], _problem("model versions", exc)
    rows = []
    for mv in reversed(found):
        tags = dict(mv.tags or {})
        created = mv.creation_timestamp
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "created": datetime.fromtimestamp(created / 1000, UTC) if created else None,
                "gate": gate(tags),
                "data_version": tags.get("radvigil.data_version"),
                "code_commit": tags.get("radvigil.code_commit"),
                "parent_version": tags.get("radvigil.parent_version"),
                "run_id": mv.run_id,
                "steps": _step(tags),
            }
        )
    return rows, None
