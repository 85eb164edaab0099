"""Rollout of a challenger: shadow, canary, promote, reject, and one-step rollback.

Under registry trust (``deployments`` given, the default) the rollout state and the aliases
live in radvigil's database, which every replica reads, and are mirrored into MLflow; without
it they live in MLflow alone (a registered-model tag and the aliases). Aliases move only here.
Every step calls ``record`` (the audit log) and tags the model version with who did it and why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from radvigil.errors import InputError, RegistryError
from radvigil.loop import change_record
from radvigil.loop.actions import Recorder
from radvigil.loop.governance import gate_status, require_gate
from radvigil.registry import Registry, Tag
from radvigil.store.deployments import MAX_CANARY_SHARE

if TYPE_CHECKING:
    from radvigil.loop.deployment import Deployments
    from radvigil.store.deployments import DeploymentState

Mode = Literal["off", "shadow", "canary"]
Action = Literal["shadow", "canary", "promote", "reject", "rollback"]


class RolloutState(BaseModel):
    """How traffic is shared between champion and challenger right now."""

    mode: Mode = "off"
    canary_share: float = Field(0.0, ge=0.0, le=MAX_CANARY_SHARE)
    challenger: str | None = None
    updated_by: str | None = None
    updated_at: str | None = None
    reason: str | None = None


def rollout_of(held: DeploymentState) -> RolloutState:
    """The rollout part of radvigil's deployment state of a model."""
    return RolloutState(
        mode=held.mode,
        canary_share=held.canary_share,
        challenger=held.challenger if held.mode != "off" else None,
        updated_by=held.updated_by,
        updated_at=held.updated_at.isoformat(timespec="seconds") if held.updated_at else None,
        reason=held.reason,
    )


def read_state(
    registry: Registry, name: str, deployments: Deployments | None = None
) -> RolloutState:
    """The rollout state: radvigil's database under registry trust, else MLflow's tag."""
    if deployments is not None:
        return rollout_of(deployments.state(name))
    raw = registry.model_tags(name).get(Tag.ROLLOUT)
    try:
        return RolloutState.model_validate_json(raw) if raw else RolloutState()
    except ValidationError as exc:
        raise RegistryError(f"the {Tag.ROLLOUT} tag of {name} is invalid: {exc}") from exc


class Rollout:
    """The rollout commands for one registered model."""

    def __init__(
        self,
        registry: Registry,
        name: str,
        record: Recorder,
        *,
        changes_dir: Path | None = None,
        evidence: Callable[[str], dict[str, Any]] | None = None,
        deployments: Deployments | None = None,
    ) -> None:
        """``changes_dir``: where promotions and rollbacks file their change-control record;
        ``evidence``: extra verification for it (e.g. the shadow comparison) by version;
        ``deployments``: radvigil's own deployment state (registry trust), else MLflow's."""
        self.registry, self.name, self.record = registry, name, record
        self.changes_dir, self.evidence = changes_dir, evidence
        self.deployments = deployments

    def _set_alias(self, alias: str, version: str, actor: str, reason: str) -> None:
        if self.deployments is not None:
            self.deployments.set_alias(self.name, alias, version, actor=actor, reason=reason)
        else:
            self.registry.set_alias(self.name, alias, version, actor, reason)

    def _remove_alias(self, alias: str, actor: str, reason: str) -> None:
        if self.deployments is not None:
            self.deployments.remove_alias(self.name, alias, actor=actor, reason=reason)
        else:
            self.registry.remove_alias(self.name, alias, actor, reason)

    def _change_record(
        self, action: str, old: str | None, new: str, actor: str, reason: str
    ) -> dict[str, str]:
        """File the change-control record before anything moves: no record, no change."""
        if self.changes_dir is None:
            return {}
        evidence = self.evidence(new) if self.evidence else None
        record = change_record.build(
            self.registry, self.name, action, old, new, actor, reason, evidence
        )
        return change_record.file_record(self.registry, record, self.changes_dir)

    def _aliases(self) -> dict[str, str]:
        if self.deployments is not None:
            held = self.deployments.state(self.name)
            found = {a: held.alias(a) for a in ("champion", "challenger", "previous")}
            return {alias: version for alias, version in found.items() if version is not None}
        return self.registry.aliases(self.name)

    def _challenger(self) -> str:
        version = self._aliases().get("challenger")
        if version is None:
            raise InputError(
                f"{self.name} has no challenger; a retrained version that passed its "
                "gates gets the alias (radvigil retrain)"
            )
        return version

    def _save(self, state: RolloutState, actor: str, reason: str) -> RolloutState:
        if self.deployments is not None:
            self.deployments.set_rollout(
                self.name, state.mode, state.canary_share, actor=actor, reason=reason
            )
            return self.state()
        state = state.model_copy(
            update={
                "updated_by": actor,
                "reason": reason,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        self.registry.set_model_tag(self.name, Tag.ROLLOUT, state.model_dump_json())
        return state

    def _tag(self, version: str, key: str, actor: str, reason: str) -> None:
        value = json.dumps(
            {"by": actor, "reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        )
        self.registry.set_version_tag(self.name, version, Tag.step(key), value)

    def state(self) -> RolloutState:
        return read_state(self.registry, self.name, self.deployments)

    def _gated(
        self, version: str, what: str, force: bool, reason: str, actor: str
    ) -> dict[str, Any]:
        """Audit details of a gated step: the version's gate, and whether it was forced."""
        status = require_gate(
            self.registry,
            self.name,
            version,
            what=what,
            force=force,
            reason=reason,
            deployments=self.deployments,
            actor=actor,
        )
        return {"reason": reason, "gate": status, "forced": force and status != "passed"}

    def shadow(self, actor: str, reason: str, *, force: bool = False) -> RolloutState:
        """The challenger scores every request in the background; only the champion answers."""
        version = self._challenger()
        details = self._gated(version, "be shadowed", force, reason, actor)
        state = self._save(RolloutState(mode="shadow", challenger=version), actor, reason)
        self._tag(version, "shadow", actor, reason)
        self.record("rollout_shadow", actor, version, details)
        return state

    def canary(self, share: float, actor: str, reason: str, *, force: bool = False) -> RolloutState:
        """The challenger answers ``share`` of studies (sticky by study hash)."""
        if not 0.0 < share <= 0.5:
            raise InputError("a canary share must be in (0, 0.5]; promote to go further")
        version = self._challenger()
        details = self._gated(version, "answer canary traffic", force, reason, actor)
        state = self._save(
            RolloutState(mode="canary", canary_share=share, challenger=version), actor, reason
        )
        self._tag(version, "canary", actor, f"{share:.0%}: {reason}")
        self.record("rollout_canary", actor, version, {"share": share, **details})
        return state

    def propose(self, version: str, actor: str, reason: str) -> str:
        """Make a registered ``version`` the challenger again; only one with a passing gate."""
        self._require_passing_gate(version, "become the challenger")
        self._set_alias("challenger", version, actor, reason)
        self._tag(version, "proposed", actor, reason)
        self.record("propose", actor, version, {"reason": reason})
        return version

    def _require_passing_gate(self, version: str, what: str) -> None:
        if gate_status(self.registry, self.name, version, deployments=self.deployments) != "passed":
            raise InputError(
                f"{self.name}/{version} has no passing gate verdict; it cannot {what} "
                "(radvigil gate ... records one)"
            )

    def promote(self, actor: str, reason: str, *, force: bool = False) -> str:
        """Challenger becomes champion; the old champion stays reachable as ``previous``."""
        version = self._challenger()
        details = self._gated(version, "be promoted", force, reason, actor)
        old = self._aliases().get("champion")
        details |= self._change_record("promote", old, version, actor, reason)
        if old is not None:
            self._set_alias("previous", old, actor, f"replaced: {reason}")
        self._set_alias("champion", version, actor, reason)
        self._remove_alias("challenger", actor, f"promoted: {reason}")
        self._save(RolloutState(), actor, f"promoted {version}")
        self._tag(version, "promoted", actor, reason)
        self.record("promote", actor, version, {"previous": old, **details})
        return version

    def reject(self, actor: str, reason: str) -> str:
        version = self._challenger()
        self._remove_alias("challenger", actor, f"rejected: {reason}")
        self._save(RolloutState(), actor, f"rejected {version}")
        self._tag(version, "rejected", actor, reason)
        self.record("reject", actor, version, {"reason": reason})
        return version

    def rollback(self, actor: str, reason: str) -> str:
        """The previous champion serves again; the rolled-back version is tagged as such."""
        aliases = self._aliases()
        previous, current = aliases.get("previous"), aliases.get("champion")
        if previous is None:
            raise InputError(f"{self.name} has no previous champion to roll back to")
        filed = self._change_record("rollback", current, previous, actor, reason)
        self._set_alias("champion", previous, actor, f"rollback: {reason}")
        self._remove_alias("previous", actor, f"rollback: {reason}")
        self._save(RolloutState(), actor, f"rolled back to {previous}")
        if current is not None:
            self._tag(current, "rolled_back", actor, reason)
        self.record("rollback", actor, previous, {"from": current, "reason": reason, **filed})
        return previous

    def move(
        self,
        action: Action,
        actor: str,
        reason: str,
        *,
        share: float | None = None,
        force: bool = False,
    ) -> str | None:
        """One rollout step by name, as the API and the dashboard ask for it; returns the
        version it moved (a canary without ``share`` sends 10%)."""
        if action == "shadow":
            return self.shadow(actor, reason, force=force).challenger
        if action == "canary":
            return self.canary(share or 0.1, actor, reason, force=force).challenger
        if action == "promote":
            return self.promote(actor, reason, force=force)
        if action == "reject":
            return self.reject(actor, reason)
        return self.rollback(actor, reason)
