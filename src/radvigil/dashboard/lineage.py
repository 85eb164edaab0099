"""Model versions as the dashboard shows them: aliases, gate verdicts, lineage, alias history.

Read through the service's registry (``state.models.registry``); a registry that cannot be
reached leaves the rest of a page working, with the problem named.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from radvigil.errors import RadvigilError
from radvigil.registry import AliasEvent, Tag
from radvigil.service.lifecycle import ServedModel
from radvigil.service.state import ServiceState

log = logging.getLogger(__name__)


def _problem(what: str, exc: Exception) -> str:
    log.warning("dashboard: %s failed: %s", what, exc)
    return f"the model registry could not be read ({what}): {exc}"


def alias_history(state: ServiceState) -> tuple[list[AliasEvent], str | None]:
    """Alias events (oldest first) and an error message when the registry failed."""
    try:
        return state.models.registry.alias_history(state.settings.model_name), None
    except RadvigilError as exc:
        return [], _problem("alias history", exc)


def promoted(history: list[AliasEvent], alias: str, version: str) -> AliasEvent | None:
    """The latest event that pointed ``alias`` at ``version``, if the history has one."""
    for event in reversed(history):
        if event.alias == alias and event.version == str(version):
            return event
    return None


def served_summary(served: ServedModel, history: list[AliasEvent]) -> dict[str, Any]:
    card = served.card
    event = promoted(history, served.alias, served.version)
    return {
        "alias": served.alias,
        "name": served.name,
        "version": served.version,
        "task": card.task.name,
        "classes": served.classes,
        "data_version": card.training_data_version,
        "loaded_at": served.loaded_at,
        "since": event.time if event else None,
        "by": event.actor if event else None,
        "reason": event.reason if event else None,
        "has_profile": served.profile is not None,
    }


def gate(tags: Mapping[str, str]) -> dict[str, Any]:
    """The gate verdict tag as ``{"state": passed|failed|none, "failed": [...]}``."""
    raw = tags.get(Tag.GATE)
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


def _step(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """Rollout steps recorded on a version (``radvigil.shadow``, ``radvigil.promoted``, ...)."""
    steps = []
    for key in Tag.STEPS:
        raw = tags.get(Tag.step(key))
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
                    aliases.setdefault(version, []).append(alias)
        found = registry.versions(name)
    except RadvigilError as exc:
        return [], _problem("model versions", exc)
    rows = []
    for mv in reversed(found):
        tags = mv.tags
        rows.append(
            {
                "version": mv.version,
                "aliases": sorted(aliases.get(mv.version, [])),
                "created": mv.created,
                "gate": gate(tags),
                "data_version": tags.get(Tag.DATA_VERSION),
                "code_commit": tags.get(Tag.CODE_COMMIT),
                "parent_version": tags.get(Tag.PARENT_VERSION),
                "run_id": mv.run_id,
                "steps": _step(tags),
            }
        )
    return rows, None
