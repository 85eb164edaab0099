"""Which version serves as what, decided by radvigil's audited database; MLflow only mirrors it.

Every alias move (champion, challenger, previous) and rollout change made through radvigil
(rollout commands, ``radvigil models alias``, retraining, the demo) is written here first, with
an event, then mirrored into MLflow's aliases and the ``radvigil.rollout`` tag for humans.
Serving reads this state and never follows MLflow. A change made in MLflow directly shows up
as a difference between the two: :meth:`Deployments.conflicts` finds it and
:meth:`Deployments.report_conflict` raises one alert and one audit record per distinct
conflict, however many replicas poll (see ``docs/registry-trust.md``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from radvigil.errors import InputError
from radvigil.loop.gate_records import (
    GateCheck,
    decision_sha256,
    record_signature,
    sign_gate,
    verify_gate,
)
from radvigil.registry import LoadedModel, Registry, Tag
from radvigil.store import AlertCreate, AlertStore, AuditLog
from radvigil.store.db import Database
from radvigil.store.deployments import (
    MAX_CANARY_SHARE,
    DeploymentState,
    DeploymentStore,
    GateRecordStore,
    GateVerdict,
    Mode,
)
from radvigil.store.schemas import utcnow

ALIASES = ("champion", "challenger", "previous")
CONFLICT_RULE = "registry_conflict"
# A change is written here first and mirrored into MLflow a moment later; a poll that falls
# in between must not call the legitimate change a conflict.
MIRROR_GRACE = timedelta(seconds=30)


class Deployments:
    """The deployment state of registered models: read, change (audited), mirror, compare."""

    def __init__(
        self, db: Database, registry: Registry, audit: AuditLog, grace: timedelta = MIRROR_GRACE
    ) -> None:
        """``grace``: how long after a change of ours MLflow may still differ (being mirrored)
        before the difference counts as a conflict."""
        self.db, self.registry, self.audit, self.grace = db, registry, audit, grace
        self.store = DeploymentStore(db)

    def state(self, name: str) -> DeploymentState:
        return self.store.get(name)

    def gate_status(self, name: str, version: str, precision: str = "fp32") -> str:
        """``passed``, ``failed``, ``forced`` or ``none``: the newest signed verdict whose
        signature checks (the model file's hash is checked by serving, at load)."""
        record = GateRecordStore(self.db).latest(name, str(version), precision)
        if record is None or record.key_id not in self.audit.keys:
            return "none"
        expected = record_signature(self.audit.keys[record.key_id], record)
        return record.verdict if hmac.compare_digest(expected, record.signature) else "none"

    def verify(self, loaded: LoadedModel) -> GateCheck:
        """May this downloaded graph serve? Its signed gate record and its file's SHA-256."""
        return verify_gate(
            self.db,
            self.audit.secret,
            name=loaded.name,
            version=loaded.version,
            onnx_path=loaded.onnx_path,
            precision=loaded.precision,
            old_keys=self.audit.keys,
            decision=decision_sha256(loaded.card),
        )

    def sign(self, loaded: LoadedModel, verdict: GateVerdict, criteria: str, actor: str) -> None:
        """Sign a gate verdict on the downloaded graph of a version (see ``sign_gate``)."""
        sign_gate(
            self.db,
            self.audit,
            name=loaded.name,
            version=loaded.version,
            onnx_path=loaded.onnx_path,
            verdict=verdict,
            criteria=criteria,
            actor=actor,
            precision=loaded.precision,
            decision=decision_sha256(loaded.card),
        )

    def sign_forced(self, name: str, version: str, actor: str) -> None:
        """Record that a person moved ``version`` past its gate (audited by the caller)."""
        loaded = self.registry.load(f"{name}/{version}")
        sign_gate(
            self.db,
            self.audit,
            name=name,
            version=str(version),
            onnx_path=loaded.onnx_path,
            verdict="forced",
            criteria="forced",
            actor=actor,
            decision=decision_sha256(loaded.card),
        )

    def set_alias(self, name: str, alias: str, version: str, *, actor: str, reason: str) -> bool:
        """Point ``alias`` at ``version`` here, then in MLflow; False when it already is."""
        if alias not in ALIASES:
            raise InputError(f"unknown alias {alias!r}; radvigil manages {list(ALIASES)}")
        current = self.state(name)
        if current.alias(alias) == str(version):
            return False
        self._save(
            current.model_copy(update={alias: str(version)}), actor, f"alias.{alias}", reason
        )
        self.registry.set_alias(name, alias, str(version), actor, reason)
        return True

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str) -> None:
        current = self.state(name)
        if current.alias(alias) is None:
            return
        self._save(current.model_copy(update={alias: None}), actor, f"alias.{alias}.remove", reason)
        if alias in self.registry.aliases(name):
            self.registry.remove_alias(name, alias, actor, reason)

    def set_rollout(
        self, name: str, mode: Mode, share: float, *, actor: str, reason: str
    ) -> DeploymentState:
        """Set the rollout mode and canary share (at most 0.5) here, then mirror the tag."""
        if not 0.0 <= share <= MAX_CANARY_SHARE:
            raise InputError(f"a canary share must be in [0, {MAX_CANARY_SHARE}]")
        current = self.state(name)
        saved = self._save(
            current.model_copy(update={"mode": mode, "canary_share": share}),
            actor,
            "rollout",
            reason,
        )
        self.registry.set_model_tag(name, Tag.ROLLOUT, rollout_tag(saved))
        return saved

    def _save(
        self, state: DeploymentState, actor: str, action: str, reason: str
    ) -> DeploymentState:
        state = state.model_copy(update={"reason": reason})
        return self.store.save(state, actor=actor, action=action, details={"reason": reason})

    def mirror(self, name: str, *, actor: str, reason: str) -> list[str]:
        """Write radvigil's state over MLflow's aliases and rollout tag; returns what changed."""
        state = self.state(name)
        found = self.registry.aliases(name)
        changed = []
        for alias in ALIASES:
            wanted = state.alias(alias)
            if found.get(alias) == wanted:
                continue
            if wanted is None:
                self.registry.remove_alias(name, alias, actor, reason)
            else:
                self.registry.set_alias(name, alias, wanted, actor, reason)
            changed.append(alias)
        tag = self.registry.model_tags(name).get(Tag.ROLLOUT)
        if _rollout_of(tag) != (state.mode, state.canary_share):
            self.registry.set_model_tag(name, Tag.ROLLOUT, rollout_tag(state))
            changed.append("rollout")
        return changed

    def conflicts(self, name: str, state: DeploymentState) -> list[str]:
        """How MLflow differs from ``state`` (empty while a change of ours is being mirrored)."""
        if state.updated_at is not None and utcnow() - state.updated_at < self.grace:
            return []
        aliases = self.registry.aliases(name)
        problems = [
            f"@{alias} is {aliases.get(alias) or 'unset'} in MLflow, "
            f"{state.alias(alias) or 'unset'} in radvigil"
            for alias in ALIASES
            if aliases.get(alias) != state.alias(alias)
        ]
        raw = self.registry.model_tags(name).get(Tag.ROLLOUT)
        found = _rollout_of(raw)
        if found is None:
            problems.append("the radvigil.rollout tag in MLflow is unreadable")
        elif found != (state.mode, state.canary_share):
            mode, share = found
            over = f" (over the {MAX_CANARY_SHARE} cap)" if share > MAX_CANARY_SHARE else ""
            problems.append(
                f"rollout is {mode} at share {share:g}{over} in MLflow, {state.mode} at share "
                f"{state.canary_share:g} in radvigil"
            )
        return problems

    def report_conflict(self, name: str, state: DeploymentState, problems: list[str]) -> bool:
        """Open one critical alert and one audit record per distinct conflict; False when an
        alert for it is already open (another poll or replica reported it)."""
        fingerprint = hashlib.sha256("\n".join(sorted(problems)).encode()).hexdigest()[:16]
        message = (
            f"{name}: MLflow was changed outside radvigil and the change is refused; "
            + "; ".join(problems)
        )
        alert = AlertStore(self.db, self.audit).open(
            AlertCreate(
                model_name=name,
                model_version=state.champion or "none",
                rule=CONFLICT_RULE,
                detector="registry",
                group=fingerprint,
                severity="critical",
                message=message[:4000],
            ),
            actor="radvigil",
        )
        if alert is None:
            return False
        self.audit.append(
            actor="radvigil",
            action="registry.conflict",
            object_type="model",
            object_id=name,
            model_version=f"{name}/{state.champion}" if state.champion else None,
            details={"problems": problems, "alert_id": alert.id, "serving": state.champion},
        )
        return True


def rollout_tag(state: DeploymentState) -> str:
    """The mirrored ``radvigil.rollout`` tag (the shape MLflow readers have always seen)."""
    return json.dumps(
        {
            "mode": state.mode,
            "canary_share": state.canary_share,
            "challenger": state.challenger if state.mode != "off" else None,
            "updated_by": state.updated_by,
            "updated_at": state.updated_at.isoformat(timespec="seconds")
            if state.updated_at
            else None,
            "reason": state.reason,
        }
    )


def _rollout_of(raw: str | None) -> tuple[str, float] | None:
    """(mode, share) of a rollout tag; ("off", 0.0) when absent, None when unreadable."""
    if not raw:
        return "off", 0.0
    try:
        data: dict[str, Any] = json.loads(raw)
        return str(data.get("mode", "off")), float(data.get("canary_share") or 0.0)
    except (ValueError, TypeError, AttributeError):
        return None


def deployments_for(
    enforce: bool,
    db: Database,
    registry: Registry,
    audit: AuditLog,
    grace: timedelta = MIRROR_GRACE,
) -> Deployments | None:
    """The deployment authority under ``RADVIGIL_REGISTRY_TRUST=enforce``, else None."""
    return Deployments(db, registry, audit, grace) if enforce else None
