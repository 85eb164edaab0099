"""Which model versions the service serves, loaded from the registry and hot-swapped.

A poller checks the registry's ``champion`` and ``challenger`` aliases; when one moves, the new
version is loaded beside the old and swapped in with one reference assignment, so requests in
flight finish on the version they started with. A version that fails to load is logged as an
error and the previous one keeps serving.

Under registry trust (``RADVIGIL_REGISTRY_TRUST=enforce``, a :class:`Deployments` given) the
aliases and rollout come from radvigil's database instead, a version loads only when its
signed gate record verifies against the file about to load, and each poll compares MLflow with
that state: a difference is refused, alerted once and shown (``registry_conflict``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from radvigil.errors import ModelError, NotFoundError, RadvigilError
from radvigil.loop.gate_records import GateCheck
from radvigil.loop.governance import gate_status
from radvigil.loop.rollout import RolloutState, read_state, rollout_of
from radvigil.model.card import ModelCard
from radvigil.model.engine import OnnxEngine, ThreadSetting
from radvigil.registry import LoadedModel, Precision, Registry

if TYPE_CHECKING:
    from radvigil.loop.deployment import Deployments
    from radvigil.store.deployments import DeploymentState

log = logging.getLogger(__name__)
# Grad-CAM runs backward passes with hooks on shared PyTorch modules; two at once corrupt
# autograd state and can crash libtorch. Everything that touches a torch model takes this lock.
TORCH_LOCK = threading.Lock()
Verifier = Callable[[LoadedModel], GateCheck]


class UntrustedModelError(ModelError):
    """A version without a valid signed gate record for the file about to load."""


@dataclass
class ServedModel:
    """A loaded version: ONNX engine, card, and (when present) its monitoring profile."""

    loaded: LoadedModel
    alias: str
    engine: OnnxEngine
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    profile: object | None = None
    precision_note: str | None = None  # why an asked-for int8 graph is not the one served
    _torch: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def card(self) -> ModelCard:
        return self.loaded.card

    @property
    def classes(self) -> list[str]:
        return list(self.card.task.classes)

    @property
    def findings(self) -> list[str]:
        return list(self.card.task.findings)

    @property
    def thresholds(self) -> dict[str, float]:
        return self.card.operating_thresholds()

    @property
    def site_thresholds(self) -> dict[str, dict[str, float]]:
        """Per site, the thresholds site calibration fitted on that site's own cases."""
        return self.card.site_thresholds

    @property
    def size(self) -> int:
        return self.card.input.size

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.engine.run(batch)

    @property
    def imported(self) -> bool:
        """True for a version radvigil did not train (``radvigil models import``)."""
        return self.card.imported is not None

    def explain(self, pixels: np.ndarray, index: int) -> np.ndarray:
        """Heatmap of class ``index`` for 8-bit pixels, one explanation at a time: Grad-CAM,
        or occlusion over the ONNX graph for an imported version (it has no torch weights)."""
        if self.imported:
            from radvigil.model.byom.saliency import occlusion

            with TORCH_LOCK:  # the same one-at-a-time rule as Grad-CAM
                return occlusion(self.engine.run, pixels, self.size, index)
        from radvigil.model.gradcam import gradcam

        with TORCH_LOCK:
            return gradcam(self.torch_model(), pixels, self.size, index)

    def torch_model(self):
        """The PyTorch network (for Grad-CAM only), loaded on first use with one thread."""
        with self._lock:
            if self._torch is None:
                import torch

                from radvigil.model.network import build_classifier

                torch.set_num_threads(1)  # leave the cores to ONNX Runtime
                weights = self.loaded.folder / "radvigil" / "weights.pt"
                if not weights.exists():
                    raise ModelError(f"{self.name}/{self.version} has no weights for explanations")
                model = build_classifier(self.card.backbone, len(self.classes))
                model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
                self._torch = model.eval()
            return self._torch


def load_served(
    registry: Registry,
    ref: str,
    alias: str,
    threads: ThreadSetting = "auto",
    precision: Precision = "fp32",
    verify: Verifier | None = None,
    deployments: Deployments | None = None,
) -> ServedModel:
    """Load a version completely (graph, card, profile) or raise ModelError saying why.

    With ``precision="int8"`` the version's int8 graph is served when it exists and its own
    gate passed (``radvigil gate --precision int8``); otherwise the fp32 graph is served and
    ``precision_note`` says why: a faster graph is never served unjudged. With ``verify``,
    the graph about to load must pass it (its signed gate record and SHA-256), else
    :class:`UntrustedModelError`.
    """
    try:
        loaded = registry.load(ref)
        loaded, note = _at_precision(registry, loaded, precision, deployments)
        if verify is not None:
            loaded, note = _verified(loaded, note, verify)
        served = ServedModel(loaded, alias, OnnxEngine(loaded.onnx_path, threads=threads))
        served.precision_note = note
        served.classes, served.size, served.thresholds  # noqa: B018 - a broken card fails here
        if loaded.profile_dir is not None:
            from radvigil.monitoring.profile import ReferenceProfile

            served.profile = ReferenceProfile.from_path(loaded.profile_dir)
        return served
    except RadvigilError:
        raise
    # A corrupt or foreign file makes ONNX Runtime, MLflow, JSON or numpy raise types of their
    # own (InvalidProtobuf, InvalidArgument, KeyError, ...): each one means "cannot serve this".
    except Exception as exc:
        raise ModelError(f"{ref} cannot be loaded ({type(exc).__name__}: {exc})") from exc


def _verified(
    loaded: LoadedModel, note: str | None, verify: Verifier
) -> tuple[LoadedModel, str | None]:
    """The graph if its signed gate record verifies; an unverified int8 graph falls back."""
    check = verify(loaded)
    if not check.ok and loaded.precision != "fp32":
        note = f"{loaded.precision} asked for: {check.reason}; serving fp32"
        loaded = loaded.at_precision("fp32")
        check = verify(loaded)
    if not check.ok:
        raise UntrustedModelError(f"refused: {check.reason}")
    return loaded, note


def _at_precision(
    registry: Registry,
    loaded: LoadedModel,
    precision: Precision,
    deployments: Deployments | None = None,
) -> tuple[LoadedModel, str | None]:
    if precision == "fp32":
        return loaded, None
    status = gate_status(registry, loaded.name, loaded.version, precision, deployments)
    if status != "passed":
        note = f"{precision} asked for, but its graph has no passing gate: serving fp32"
    else:
        try:
            return loaded.at_precision(precision), None
        except ModelError as exc:
            note = f"{precision} asked for: {exc.message}; serving fp32"
    log.warning("model lifecycle: %s/%s: %s", loaded.name, loaded.version, note)
    return loaded, note


class ModelManager:
    """Holds the champion (and challenger) and follows their aliases in the registry."""

    def __init__(
        self,
        registry: Registry,
        name: str,
        poll_seconds: float,
        threads: ThreadSetting = "auto",
        precision: Precision = "fp32",
        deployments: Deployments | None = None,
    ) -> None:
        self.registry = registry
        self.deployments = deployments
        self.registry_conflict: str | None = None  # a change made in MLflow and refused
        self._refused: dict[str, str] = {}  # version -> why it may not serve (logged once)
        self.precision = precision
        self.name = name
        self.poll_seconds = poll_seconds
        self.threads = threads
        self.champion: ServedModel | None = None
        self.challenger: ServedModel | None = None
        self.rollout = RolloutState()
        self.last_error: str | None = None
        self.load_failures = 0
        self.fallback: str | None = None  # set while a broken champion is replaced by @previous
        self._broken: set[str] = set()  # versions that failed to load (artifacts are immutable)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load whatever the aliases point at now; True when anything changed."""
        if self.deployments is not None:
            return self._refresh_trusted(self.deployments)
        changed = False
        try:
            self.rollout = read_state(self.registry, self.name)
        except RadvigilError:
            self.rollout = RolloutState()
        for alias in ("champion", "challenger"):
            current: ServedModel | None = getattr(self, alias)
            try:
                mv = self.registry.resolve(f"{self.name}@{alias}")
            except NotFoundError:
                if current is not None and alias == "challenger":
                    self.challenger, changed = None, True
                continue
            except RadvigilError as exc:
                self._failed(f"cannot reach the registry: {exc.message}")
                continue
            version = str(mv.version)
            if current is not None and current.version == version:
                continue
            if version in self._broken:
                continue
            try:
                served = load_served(
                    self.registry, f"{self.name}/{version}", alias, self.threads, self.precision
                )
            except ModelError as exc:
                self._broken.add(version)
                self._failed(
                    f"version {version} ({alias}) failed to load, keeping "
                    f"{current.version if current else 'nothing'}: {exc.message}"
                )
                if alias == "champion" and current is None:
                    changed = self._fall_back(version) or changed
                continue
            except RadvigilError as exc:  # e.g. the artifact store is briefly unreachable
                self._failed(f"version {version} ({alias}) not loaded yet: {exc.message}")
                continue
            setattr(self, alias, served)
            if alias == "champion":
                self.fallback = None
            changed = True
            log.warning("now serving %s/%s as %s", self.name, served.version, alias)
        return changed

    def _refresh_trusted(self, deployments: Deployments) -> bool:
        """Follow radvigil's deployment state; report (once) how MLflow differs from it."""
        try:
            held = deployments.state(self.name)
        except RadvigilError as exc:  # the database is briefly down: keep serving
            self._failed(f"cannot read the deployment state: {exc.message}")
            return False
        self.rollout = rollout_of(held)
        self._compare_registry(deployments, held)
        changed = False
        for alias in ("champion", "challenger"):
            current: ServedModel | None = getattr(self, alias)
            version = held.alias(alias)
            if version is None:
                if current is not None and alias == "challenger":
                    self.challenger, changed = None, True
                continue
            if current is not None and current.version == version:
                continue
            served = self._load_trusted(deployments, version, alias)
            if served is None:
                if alias == "champion" and current is None and held.previous:
                    served = self._load_trusted(deployments, held.previous, alias)
                    if served is not None:
                        self.fallback = (
                            f"champion version {version} cannot serve; serving the previous "
                            f"champion, version {served.version}"
                        )
                        log.error("model lifecycle: %s", self.fallback)
                        self.champion, changed = served, True
                continue
            setattr(self, alias, served)
            if alias == "champion":
                self.fallback = None
            changed = True
            log.warning("now serving %s/%s as %s", self.name, served.version, alias)
        return changed

    def _load_trusted(
        self, deployments: Deployments, version: str, alias: str
    ) -> ServedModel | None:
        """Load a version whose signed gate record verifies, or None (logged once per reason)."""
        if version in self._broken:
            return None
        try:
            served = load_served(
                self.registry,
                f"{self.name}/{version}",
                alias,
                self.threads,
                self.precision,
                verify=deployments.verify,
                deployments=deployments,
            )
        except UntrustedModelError as exc:  # a record may be signed later: check again
            if self._refused.get(version) != exc.message:
                self._refused[version] = exc.message
                self._failed(f"version {version} ({alias}) {exc.message}")
            return None
        except ModelError as exc:
            self._broken.add(version)
            self._failed(f"version {version} ({alias}) failed to load: {exc.message}")
            return None
        except RadvigilError as exc:
            self._failed(f"version {version} ({alias}) not loaded yet: {exc.message}")
            return None
        self._refused.pop(version, None)
        return served

    def _compare_registry(self, deployments: Deployments, held: DeploymentState) -> None:
        """Refuse what was changed in MLflow directly: alert once, show it, serve on."""
        try:
            problems = deployments.conflicts(self.name, held)
        except RadvigilError as exc:
            self._failed(f"cannot compare with the registry: {exc.message}")
            return
        if not problems:
            self.registry_conflict = None
            return
        self.registry_conflict = "; ".join(problems)
        try:
            if deployments.report_conflict(self.name, held, problems):
                log.error("model lifecycle: registry conflict refused: %s", self.registry_conflict)
        except RadvigilError as exc:
            self._failed(f"cannot record the registry conflict: {exc.message}")

    def _fall_back(self, broken: str) -> bool:
        """At start-up, serve ``@previous`` when the champion cannot be loaded."""
        try:
            previous = self.registry.resolve(f"{self.name}@previous")
            served = load_served(
                self.registry,
                f"{self.name}/{previous.version}",
                "champion",
                self.threads,
                self.precision,
            )
        except RadvigilError as exc:
            self._failed(f"no fallback: @previous cannot be served either ({exc.message})")
            return False
        self.champion = served
        self.fallback = (
            f"champion version {broken} failed to load; serving the previous champion, "
            f"version {served.version}"
        )
        log.error("model lifecycle: %s", self.fallback)
        return True

    def _failed(self, message: str) -> None:
        self.last_error = message
        self.load_failures += 1
        log.error("model lifecycle: %s", message)

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            # The poller must outlive any failure, or the service silently stops following
            # promotions and rollbacks; the error is counted and logged instead.
            except Exception as exc:
                self._failed(f"registry poll failed ({type(exc).__name__}: {exc})")

    def route(self, study_hash: str) -> tuple[ServedModel, str]:
        """Which version answers this study: the challenger for a sticky canary share."""
        champion, challenger, rollout = self.require_champion(), self.challenger, self.rollout
        if rollout.mode == "canary" and challenger is not None:
            bucket = int(study_hash[:8], 16) / 0xFFFFFFFF
            if bucket < rollout.canary_share:
                return challenger, "challenger"
        return champion, "champion"

    def shadow(self) -> ServedModel | None:
        """The challenger when it should score every request silently."""
        return self.challenger if self.rollout.mode == "shadow" else None

    def require_champion(self) -> ServedModel:
        champion = self.champion
        if champion is None:
            raise ModelError(
                f"no champion model for {self.name!r} is loaded; train one and set the alias "
                f"(radvigil train, radvigil gate, then radvigil models alias NAME champion VERSION)"
            )
        return champion
