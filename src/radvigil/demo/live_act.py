"""The scenario's live steps: traffic through the running service, labels, triggers, the
challenger's gates and rollout, the before/after comparison, and act two."""

from __future__ import annotations

import hashlib
import json

import httpx
import numpy as np
import pandas as pd

from radvigil.data.manifest import DatasetVersion, canonical
from radvigil.demo.context import DemoContext, RunningService
from radvigil.demo.outcomes import (
    ActTwo,
    CanaryReport,
    Gated,
    LabelledMonitor,
    Metrics,
    ScenarioResult,
    TrafficReport,
)
from radvigil.demo.traffic_client import Served, Study, TrafficSimulator, load_studies
from radvigil.loop.actions import version_recorder
from radvigil.loop.deployment import deployments_for
from radvigil.loop.evaluation import evaluate_version, gate_version, record_gate
from radvigil.loop.retrain import FEEDBACK_SOURCE, retrain, site_calibrate
from radvigil.loop.rollout import Rollout
from radvigil.loop.shadow import ShadowReport
from radvigil.loop.training import run_training
from radvigil.loop.triggers import check_triggers
from radvigil.loop.workspace import Workspace
from radvigil.registry import LoadedModel, Tag
from radvigil.store import (
    AlertPublic,
    AuditLog,
    FeedbackStore,
    KeyStore,
    MonitorResultStore,
    PredictionStore,
)

ACTOR = "demo-admin"  # who the scenario's admin steps are recorded as
FINDING = "pneumonia"
ROLES = ("admin", "clinician", "service")
MONITOR_TIMEOUT_S = 900.0


class LiveAct:
    """The steps that need the running service."""

    def __init__(self, context: DemoContext, service: RunningService, result: ScenarioResult):
        self.ctx, self.service, self.result = context, service, result
        self.config = context.config
        keys = KeyStore(service.db)
        self.tokens = {
            role: keys.create(f"demo-{role}", role, rate_limit=100_000)[0] for role in ROLES
        }
        self.audit = AuditLog(service.db, secret=context.settings.audit_key)
        self.record = version_recorder(self.audit, context.name)
        enforce = context.settings.registry_trust == "enforce"
        self.deployments = deployments_for(enforce, service.db, context.registry, self.audit)
        self.workspace = Workspace(
            context.catalog,
            context.registry,
            PredictionStore(service.db),
            FeedbackStore(service.db),
            context.criteria,
            context.settings.reports_dir,
            self.record,
            ACTOR,
            deployments=self.deployments,
        )
        self.truth: dict[str, Served] = {}

    def headers(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.tokens[role]}

    def play(self) -> None:
        """Both acts; the scenario's API keys are revoked when it ends, however it ends."""
        try:
            self._play()
        finally:
            keys = KeyStore(self.service.db)
            for role in ROLES:
                keys.revoke(f"demo-{role}", actor=ACTOR)

    def _play(self) -> None:
        stream = pd.read_csv(self.config.bundle / "stream.csv", dtype=str, keep_default_na=False)
        stream = stream.sample(frac=1.0, random_state=self.config.stream_seed)
        batch = stream["acquisition_batch"]
        n_a, n_b = self.config.normal_studies, self.config.drift_studies
        before = stream[batch == self.config.normal_batch].iloc[:n_a]
        after = stream[batch == self.config.drift_batch].iloc[:n_b]
        normal = load_studies(self.config.bundle, before, seed=0, prefix="normal")
        drift = load_studies(
            self.config.bundle, after, self.config.scanner_change, seed=n_a, prefix="drift"
        )
        self.drift_studies = drift
        result, step = self.result, self.ctx.step
        with httpx.Client(base_url=self.service.url, timeout=120) as client:
            self.client = client
            # every bundled Kermany film is an AP view, and the request says so, as a PACS would
            metadata = json.dumps({"site": self.config.site, "view": "AP"})
            self.traffic = TrafficSimulator(client, self.tokens["service"], metadata)
            result.normal = step(
                result, "Serve the champion: normal traffic", lambda: self._era(normal, False)
            )
            result.drift = step(
                result,
                "The site's other acquisition batch arrives",
                lambda: self._era(drift, True),
            )
            step(result, "Clinicians label the review queue", self._label)
            result.labelled_monitors = step(
                result, "Labelled monitors once the labels arrive", self._labelled_monitors
            )
            result.triggers = step(result, "Check the retraining triggers", self._triggers)
            if not result.triggers.fired:
                return
            result.challenger = step(result, "Retrain and gate the challenger", self._retrain)
            result.site_calibrated = step(
                result,
                "Site calibration (no retraining): proposed if it passes and the retrained "
                "challenger did not",
                self._calibrate,
            )
            if result.proposed is None:
                return
            result.shadow = step(result, "Shadow the challenger", self._shadow)
            result.canary = step(result, "Canary the challenger", self._canary)
            step(result, "Promote the challenger", self._promote)
            step(result, "Drift-era studies before and after", self._before_after)
            result.act_two = step(result, "Act two: a bad challenger", self._act_two)

    def _send(self, studies: list[Study], what: str) -> list[Served]:
        served = self.traffic.send(studies, lambda x: self.ctx.observer.progress(x, what))
        self.truth.update({s.request_id: s for s in served})
        self.service.settle()
        return served

    def _monitor(self) -> list[AlertPublic]:
        admin = self.headers("admin")
        # every detector on every new window: minutes on a busy 2-core machine
        self.client.post(
            "/v1/monitoring/run", headers=admin, timeout=MONITOR_TIMEOUT_S
        ).raise_for_status()
        alerts = self.client.get(
            "/v1/monitoring/alerts", headers=admin, params={"state": "open"}
        ).json()
        return [AlertPublic.model_validate(a) for a in alerts]

    def _era(self, studies: list[Study], drifted: bool) -> tuple[str, TrafficReport]:
        served = self._send(studies, "streaming")
        alerts = self._monitor()
        champion = None
        if drifted:
            self.drift_served = served
            loaded = self.ctx.registry.load(f"{self.ctx.name}@champion")
            champion = self._metrics("champion on drift-era studies", loaded, served)
        report = TrafficReport(
            studies=len(served),
            drifters=sum(s.routed_to_review for s in served),
            open_alerts=alerts,
            champion=champion,
        )
        what = "after the acquisition change " if drifted else ""
        return (
            f"{report.studies} real studies {what}served; {report.drifters} routed to review; "
            f"open alerts: {len(alerts)}",
            report,
        )

    def _label(self) -> tuple[str, int]:
        """Clinicians label what the site's budgeted queue offers: never more than the budget."""
        clinician = self.headers("clinician")
        queue = self.client.get(
            "/v1/review",
            headers=clinician,
            params={"site": self.config.site, "limit": self.config.label_budget},
        ).json()
        found = [
            self.truth[i["request_id"]] for i in queue["items"] if i["request_id"] in self.truth
        ]
        labelled = self._label_served(found)
        self.result.labelled = labelled
        budget = queue.get("label_budget") or {}
        audit = sum(i.get("policy") == "audit" for i in queue["items"])
        return (
            f"{labelled} studies labelled of a {budget.get('budget', '?')}-label budget "
            f"({audit} audit sample, {labelled - audit} {budget.get('policy', '?')} policy; "
            "simulated clinicians: labels come from ground truth)",
            labelled,
        )

    def _label_served(self, served: list[Served]) -> int:
        """Simulated clinicians label each study with its ground truth, through the API."""
        for item in served:
            self.client.post(
                "/v1/feedback",
                headers=self.headers("clinician"),
                json={
                    "prediction_id": item.request_id,
                    "label": item.label,
                    "comment": "simulated clinician: the study's ground truth",
                },
            ).raise_for_status()
        return len(served)

    def _labelled_monitors(self) -> tuple[str, list[LabelledMonitor]]:
        alerts = self._monitor()  # windows re-judged with the new labels
        if self.result.drift is not None:
            self.result.drift.open_alerts = alerts
        rows = [
            row
            for name in ("performance", "concept")
            for row in MonitorResultStore(self.service.db).list(
                model_name=self.ctx.name, detector=name, group="all", newest_first=False
            )
        ]
        found = [
            LabelledMonitor(
                detector=row.detector,
                window=f"{row.window_start:%H:%M:%S}-{row.window_end:%H:%M:%S}",
                n_labelled=int(row.details.get("labels_at_run", 0) or 0),
                drift=None if row.skipped else row.drift,
                message=row.skipped or _labelled_message(row.details),
            )
            for row in rows
        ]
        judged = [m for m in found if m.drift is not None]
        flagged = sum(bool(m.drift) for m in judged)
        return (
            f"{len(judged)} of {len(found)} labelled-monitor results judged on late labels; "
            f"{flagged} flag a drop at the served threshold",
            found,
        )

    def _triggers(self):
        check = check_triggers(
            self.service.db,
            self.ctx.registry,
            self.ctx.name,
            self.config.triggers,
            record=self.record,
            actor=ACTOR,
        )
        outcome = (
            "retraining triggered by " + ", ".join(check.fired)
            if check.fired
            else "no trigger fired"
        )
        return outcome, check

    def _retrain(self) -> tuple[str, Gated]:
        champion = self.ctx.registry.load(f"{self.ctx.name}@champion")
        outcome = retrain(
            champion,
            self.workspace,
            holdout_share=self.config.holdout_share,
            calibration_share=self.config.calibration_share,
            seed=self.config.seed,
            local_weight=self.config.local_weight,
            warm_start_epochs=self.config.warm_start_epochs,
            target_sensitivity=self.config.challenger_sensitivity,
        )
        self.retrained = outcome
        gated = Gated(
            version=outcome.version,
            verdict=outcome.verdict,
            note=f"{outcome.feedback_cases} labelled drifters; data {outcome.data_version}",
        )
        return f"challenger {self.ctx.name}/{outcome.version}: {outcome.verdict.summary()}", gated

    def _calibrate(self) -> tuple[str, Gated]:
        champion = self.ctx.registry.load(f"{self.ctx.name}@champion")
        outcome = site_calibrate(
            champion,
            self.workspace,
            holdout_share=self.config.holdout_share,
            calibration_share=self.config.calibration_share,
            seed=self.config.seed,
            propose=not self.retrained.passed,
            site=self.config.site,
            target_sensitivity=self.config.site_sensitivity,
        )
        change = self.ctx.registry.resolve(f"{self.ctx.name}/{outcome.version}").tags.get(
            Tag.SITE_CALIBRATION, ""
        )
        gated = Gated(version=outcome.version, verdict=outcome.verdict, note=change)
        return (
            f"recalibrated {self.ctx.name}/{outcome.version} (same weights): "
            f"{outcome.verdict.summary()}",
            gated,
        )

    def _move(self, action: str, reason: str, **extra: object) -> dict:
        response = self.client.post(
            f"/v1/admin/rollout/{action}",
            headers=self.headers("admin"),
            json={"reason": reason, **extra},
        )
        response.raise_for_status()
        self.service.refresh_models()
        return response.json()

    def _shadow(self) -> tuple[str, ShadowReport]:
        self._move("shadow", "demo: compare on live traffic")
        studies = self._resend(self.config.shadow_studies, "shadow")
        self._label_served(self._send(studies, "shadowing"))
        report = ShadowReport.model_validate(
            self.client.get("/v1/admin/rollout/shadow-report", headers=self.headers("admin")).json()
        )
        return (
            f"{report.pairs} shadowed studies, agreement {_num(report.agreement)}; labelled "
            f"accuracy champion {_num(report.champion_accuracy)}, challenger "
            f"{_num(report.challenger_accuracy)}",
            report,
        )

    def _resend(self, n: int, prefix: str) -> list[Study]:
        """Drift-era studies sent again (new requests, same pixels) for shadow and canary."""
        return [
            Study(f"{prefix}-{i}.png", s.png, s.label, s.source)
            for i, s in enumerate(self.drift_studies[:n])
        ]

    def _canary(self) -> tuple[str, CanaryReport]:
        share = self.config.canary_share
        self._move("canary", f"demo: {share:.0%} of studies", share=share)
        served = self._send(self._resend(self.config.canary_studies, "canary"), "canary")
        counts: dict[str, int] = {}
        for s in served:
            counts[s.served_by] = counts.get(s.served_by, 0) + 1
        report = CanaryReport(share=share, served_by=dict(sorted(counts.items())))
        return f"canary at {share:.0%}: served by {report.served_by}", report

    def _promote(self) -> tuple[str, str]:
        body = self._move("promote", "demo: gates passed, shadow and canary clean")
        served = self._served_champion()
        self.result.promoted = body["version"]
        return f"champion is now version {served} (the old one is kept as @previous)", served

    def _served_champion(self) -> str:
        body = self.client.get("/v1/model", headers=self.headers("admin")).json()
        return str(body["champion"]["version"])

    def _held_out(self) -> list[Served]:
        """Drift-era studies whose labels did not train the challenger."""
        trained = set(
            self.ctx.catalog.load(self.retrained.data_version)
            .frame.query(f"source_dataset == '{FEEDBACK_SOURCE}' and split != 'test'")
            .get("prediction_id", pd.Series(dtype=str))
        )
        return [s for s in self.drift_served if s.request_id not in trained]

    def _metrics(self, label: str, loaded: LoadedModel, served: list[Served]) -> Metrics:
        version = self._drift_version(served)
        result, _ = evaluate_version(loaded, version, "test")
        return Metrics.of(label, loaded.version, result, FINDING)

    def _drift_version(self, served: list[Served]) -> DatasetVersion:
        """The drift-era studies as a dataset version (the pixels the service saw)."""
        folder = self.ctx.work / "drift-era"
        folder.mkdir(parents=True, exist_ok=True)
        by_source = {s.source: s for s in self.drift_studies}
        rows = []
        for item in served:
            study = by_source[item.source]
            path = folder / study.name
            path.write_bytes(study.png)
            rows.append(
                {
                    "path": path.name,
                    "label": item.label,
                    "split": "test",
                    "sha256": _sha(study.png),
                    "request_id": item.request_id,
                    "site": self.config.site,  # the site the studies were sent from
                }
            )
        return DatasetVersion(canonical(pd.DataFrame(rows)), folder)

    def _before_after(self) -> tuple[str, list[Metrics]]:
        held = self._held_out()
        before = self.ctx.registry.load(f"{self.ctx.name}@previous")
        after = self.ctx.registry.load(f"{self.ctx.name}@champion")
        rows = [
            self._metrics("before (old champion)", before, held),
            self._metrics("after (new champion)", after, held),
        ]
        calibrated_only = self.result.site_calibrated
        if calibrated_only is not None and calibrated_only.version != after.version:
            calibrated = self.ctx.registry.load(f"{self.ctx.name}/{calibrated_only.version}")
            rows.append(self._metrics("site calibration only", calibrated, held))
        self.result.before_after = rows
        a, b = rows[:2]
        return (
            f"{len(held)} held-out drift-era studies: specificity "
            f"{_v(a.specificity)} -> {_v(b.specificity)}, sensitivity "
            f"{_v(a.sensitivity)} -> {_v(b.sensitivity)}",
            rows,
        )

    def _act_two(self) -> tuple[str, ActTwo]:
        before = self._served_champion()
        bad = self._bad_challenger()
        during = self._served_champion()
        rollout = Rollout(
            self.ctx.registry, self.ctx.name, self.record, deployments=self.deployments
        )
        self._move("rollback", "drill: restore the previous champion in one step")
        rolled_back_to = self._served_champion()
        rollout.propose(before, ACTOR, "drill over: the repaired version again")
        self._move("promote", "drill over: the repaired version serves again")
        act = ActTwo(
            bad=bad,
            stopped_by=None if bad.verdict.passed else "gates",
            champion_before=before,
            champion_after=during,
            rolled_back_to=rolled_back_to,
            restored=self._served_champion(),
        )
        stopped = "NOT stopped by its gates" if bad.verdict.passed else "stopped by its gates"
        return (
            f"shuffled-label challenger {bad.version} {stopped} ({bad.verdict.summary()}); "
            f"never proposed, champion {during} kept serving; rollback drill: "
            f"{before} -> {rolled_back_to} -> {act.restored}",
            act,
        )

    def _bad_challenger(self) -> Gated:
        """A challenger trained on the same data with its labels shuffled (seeded)."""
        version = self.ctx.catalog.load(self.retrained.data_version)
        frame = version.frame.copy()
        rng = np.random.default_rng(self.config.seed)
        train = frame["split"] != "test"
        frame.loc[train, "label"] = rng.permutation(frame.loc[train, "label"].to_numpy())
        shuffled = DatasetVersion(canonical(frame), version.root, {"source": {"kind": "shuffled"}})
        data_id = self.ctx.catalog.save(shuffled, name="shuffled-labels")
        # one short epoch is enough to show the gates stop a model that learned nothing
        cfg = self.ctx.train_config.model_copy(update={"epochs": 1, "max_train_images": 256})
        outcome = run_training(
            cfg,
            data_id,
            self.ctx.catalog,
            self.ctx.registry,
            extra_tags={Tag.NOTE: "deliberately bad: shuffled labels"},
        )
        candidate = self.ctx.registry.load(f"{outcome.name}/{outcome.version}")
        champion = self.ctx.registry.load(f"{self.ctx.name}@champion")
        verdict = gate_version(
            self.ctx.criteria,
            candidate,
            champion,
            self.ctx.catalog.load(self.retrained.data_version),
            "test",
        )
        record_gate(
            self.ctx.registry,
            candidate,
            verdict,
            self.ctx.criteria,
            actor=ACTOR,
            deployments=self.deployments,
        )
        self.record(
            "retrain", ACTOR, outcome.version, {"gate": verdict.summary(), "challenger": False}
        )
        return Gated(version=outcome.version, verdict=verdict, note="trained on shuffled labels")


def _labelled_message(details: dict) -> str:
    """Sensitivity/specificity with Wilson CIs (performance) or the error rates (concept)."""
    if "sensitivity" in details:
        parts = []
        for metric in ("sensitivity", "specificity"):
            d = details.get(metric) or {}
            low, high = (d.get("ci") or [None, None])[:2]
            if d.get("value") is not None and low is not None:
                parts.append(
                    f"{metric} {d['value']:.2f} ({low:.2f}-{high:.2f}, n={d.get('n')}; "
                    f"reference {d.get('reference', 0):.2f})"
                )
        return "; ".join(parts)
    if "error_rate" in details:
        message = (
            f"error rate {details['error_rate']:.2f} vs reference "
            f"{details.get('reference_error_rate', 0):.2f}"
        )
        if details.get("input_drift"):
            message += (
                f"; not a concept change: input drift seen by {', '.join(details['input_drift'])}"
            )
        return message
    return ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _v(estimate) -> str:
    return _num(estimate.value)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
