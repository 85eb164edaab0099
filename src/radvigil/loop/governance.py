"""Who may move which alias: the one home of the rule every path (CLI, API, training) obeys.

``champion`` and ``challenger`` put a version in front of patients (directly, or through shadow
and canary), so moving them needs a passing gate verdict recorded on that version
(``radvigil gate``), or an explicit ``force`` with a reason. Every move is audited with the
actor, the gate verdict and whether it was forced. Under registry trust (``deployments``
given), the verdict is the signed gate record in radvigil's database, not the MLflow tag, and
the move is written there first (``loop/deployment.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from radvigil.errors import ForbiddenError, InputError
from radvigil.registry import Precision, Registry, Tag

if TYPE_CHECKING:
    from radvigil.loop.deployment import Deployments

GATED_ALIASES = frozenset({"champion", "challenger"})
Recorder = Callable[[str, str, str, dict[str, Any]], None]  # (action, actor, version, details)


def gate_status(
    registry: Registry,
    name: str,
    version: str,
    precision: Precision = "fp32",
    deployments: Deployments | None = None,
) -> str:
    """``passed``, ``failed`` or ``none`` for the gate verdict recorded on a version's graph:
    its signed gate record under registry trust, else its MLflow tag."""
    if deployments is not None:
        status = deployments.gate_status(name, version, precision)
        return status if status in ("passed", "failed") else "none"
    raw = registry.resolve(f"{name}/{version}").tags.get(Tag.gate(precision))
    if not raw:
        return "none"
    try:
        return "passed" if json.loads(raw).get("passed") else "failed"
    except (ValueError, AttributeError):
        return "failed"


def require_gate(
    registry: Registry,
    name: str,
    version: str,
    *,
    what: str,
    force: bool,
    reason: str | None,
    deployments: Deployments | None = None,
    actor: str = "radvigil",
) -> str:
    """The version's gate status; ForbiddenError unless it passed or ``force`` has a reason.

    A forced version under registry trust gets a signed ``forced`` record, so it may serve."""
    status = gate_status(registry, name, version, deployments=deployments)
    if status == "passed":
        return status
    if not force:
        raise ForbiddenError(
            f"{name}/{version} has {'a failed' if status == 'failed' else 'no'} gate verdict; "
            f"it cannot {what} (record a passing one with `radvigil gate`, or force it with a "
            "reason)"
        )
    if not reason or len(reason.strip()) < 3:
        raise InputError("forcing past a gate needs a reason (at least 3 characters)")
    if deployments is not None:
        deployments.sign_forced(name, version, actor)
    return status


def move_alias(
    registry: Registry,
    name: str,
    alias: str,
    version: str,
    *,
    actor: str,
    reason: str | None,
    record: Recorder,
    force: bool = False,
    deployments: Deployments | None = None,
) -> bool:
    """Point ``alias`` at ``version`` under the gate rule and audit it; False if unchanged."""
    status = gate_status(registry, name, version, deployments=deployments)
    if alias in GATED_ALIASES:
        status = require_gate(
            registry,
            name,
            version,
            what=f"become {alias}",
            force=force,
            reason=reason,
            deployments=deployments,
            actor=actor,
        )
    why = reason or "set by hand"
    if deployments is not None:
        changed = deployments.set_alias(name, alias, version, actor=actor, reason=why)
    else:
        changed = registry.set_alias(name, alias, version, actor=actor, reason=why)
    if changed:
        record(
            "alias.set",
            actor,
            version,
            {"alias": alias, "reason": why, "gate": status, "forced": force and status != "passed"},
        )
    return changed
