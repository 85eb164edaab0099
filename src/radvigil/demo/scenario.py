"""The closed-loop demo as a scenario: real data in, typed verdicts out.

Act one: train and gate a champion, serve it, stream held-back real studies, change the scanner,
let the monitors alert, label the review queue (simulated clinicians: labels come from ground
truth), fire the trigger, retrain and gate a challenger, shadow it, canary it, promote it, and
compare both versions on held-out drift-era studies. Act two: a challenger trained on shuffled
labels is stopped by its gates while the champion keeps serving, and a rollback is drilled.

The service is injected (``serve``), so this module drives it over HTTP without importing it;
``radvigil demo`` and the scenario test pass :func:`radvigil.demo.harness.running_service`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from radvigil.config import Settings
from radvigil.data.catalog import DatasetCatalog
from radvigil.data.importers import from_csv
from radvigil.data.qc_result import QCReport
from radvigil.data.quality import run_qc
from radvigil.demo.context import (
    DemoContext,
    ScenarioObserver,
    ServeFn,
    SilentObserver,
    run_step,
)
from radvigil.demo.live_act import ACTOR, LiveAct
from radvigil.demo.outcomes import Gated, ScenarioConfig, ScenarioResult, processing_worst
from radvigil.evaluation import GateCriteria, load_criteria
from radvigil.loop.deployment import Deployments
from radvigil.loop.evaluation import gate_version, record_gate
from radvigil.loop.training import run_training
from radvigil.model.config import TrainConfig, load_config
from radvigil.registry import Registry
from radvigil.store import AuditLog, Database, upgrade_database


def scenario_settings(settings: Settings, config: ScenarioConfig) -> Settings:
    """The service settings the scenario runs with: the site on a total label budget (its
    budgeted queue picks what clinicians label, no blanket audit routing), review images kept,
    monitoring on demand with windows that fit the stream, a fast model poll. Writes the
    monitoring YAML."""
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    monitoring = home / "monitoring.yaml"
    monitoring.write_text(
        "# written by the demo scenario: count windows that fit the bundled stream\n"
        f"windows: {{size: {config.window_size}, min_size: {config.window_size // 2}, "
        "group_by: null}\n"  # one site: per-site windows would repeat the overall ones
    )
    return settings.model_copy(
        update={
            "store_review_images": True,
            "review_audit_share": 0.0,
            "label_budgets": {config.site: config.label_budget},
            "label_budget_period": "total",
            "label_policy": config.label_policy,
            "label_audit_share": config.audit_share,
            "monitoring_config": monitoring,
            "monitor_interval_seconds": 0,
            "model_poll_seconds": 2.0,
        }
    )


class Scenario:
    """One run of the closed loop on the bundled data in ``settings.home_dir``."""

    def __init__(
        self,
        config: ScenarioConfig,
        settings: Settings,
        serve: ServeFn,
        observer: ScenarioObserver | None = None,
    ) -> None:
        self.config, self.serve = config, serve
        self.settings = scenario_settings(settings, config)
        self.observer = observer or SilentObserver()
        self.catalog = DatasetCatalog(settings.datasets_dir)
        self.registry = Registry(
            settings.resolved_tracking_uri,
            settings.artifacts_dir,
            settings.home_dir / "model-cache",
        )
        self.criteria: GateCriteria = load_criteria(config.criteria)
        self.train_config: TrainConfig = load_config(config.train_config)
        self.work = settings.home_dir / "scenario"

    def _step(self, result: ScenarioResult, name: str, fn: Callable[[], tuple[str, object]]):
        return run_step(self.observer, result, name, fn)

    def _context(self, name: str) -> DemoContext:
        """What the live act gets of this scenario (``name``: the registered model's)."""
        return DemoContext(
            config=self.config,
            settings=self.settings,
            name=name,
            catalog=self.catalog,
            registry=self.registry,
            criteria=self.criteria,
            train_config=self.train_config,
            work=self.work,
            observer=self.observer,
        )

    def run(self) -> ScenarioResult:
        started = time.perf_counter()
        self.work.mkdir(parents=True, exist_ok=True)
        result = ScenarioResult()
        self._step(result, "Import and check the bundled data", self._import)
        result.data_version = self.data_id
        result.champion = self._step(
            result, "Train, calibrate, export, gate and register the champion", self._champion
        )
        if result.champion.verdict.passed:
            with self.serve(self.settings, self.registry) as service:
                LiveAct(self._context(self.name), service, result).play()
        result.seconds = time.perf_counter() - started
        return result

    def _deployments(self) -> Deployments | None:
        """The deployment authority on the database the scenario's service will use."""
        if self.settings.registry_trust != "enforce":
            return None
        db = Database.from_settings(self.settings)
        upgrade_database(db)
        audit = AuditLog(db, secret=self.settings.audit_key)
        return Deployments(db, self.registry, audit)

    def _import(self) -> tuple[str, QCReport]:
        imported = from_csv(
            self.config.bundle / "manifest.csv",
            progress=lambda x: self.observer.progress(x, "importing"),
        )
        self.data_id = self.catalog.save(imported.version, name="bundled-kermany")
        report = run_qc(
            self.catalog.load(self.data_id), progress=lambda x: self.observer.progress(x, "QC")
        )
        return (
            f"dataset version {self.data_id} ({report.items} images, "
            f"{len(report.failing_paths())} failing QC)",
            report,
        )

    def _champion(self) -> tuple[str, Gated]:
        outcome = run_training(
            self.train_config,
            self.data_id,
            self.catalog,
            self.registry,
            progress=lambda x: self.observer.progress(x, "loading"),
        )
        loaded = self.registry.load(f"{outcome.name}/{outcome.version}")
        verdict = gate_version(self.criteria, loaded, None, self.catalog.load(self.data_id), "test")
        deployments = self._deployments()
        record_gate(
            self.registry, loaded, verdict, self.criteria, actor=ACTOR, deployments=deployments
        )
        self.name = outcome.name
        if verdict.passed:
            why = "first model: gates passed"
            if deployments is not None:
                deployments.set_alias(
                    outcome.name, "champion", outcome.version, actor=ACTOR, reason=why
                )
            else:
                self.registry.set_alias(outcome.name, "champion", outcome.version, ACTOR, why)
        gated = Gated(version=outcome.version, verdict=verdict)
        worst = processing_worst(verdict)
        return f"{outcome.name}/{outcome.version}: {verdict.summary()}" + (
            f"; {worst}" if worst else ""
        ), gated
