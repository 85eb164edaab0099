"""Which model versions the service serves, loaded from the registry and hot-swapped.

A poller checks the registry's ``champion`` and ``challenger`` aliases; when one moves, the new
version is loaded beside the old and swapped in with one reference assignment, so requests in
flight finish on the version they started with. A version that fails to load is logged as an
error and the previous one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from radvigil.errors import ModelError, NotFoundError, RadvigilError
from radvigil.loop.rollout import RolloutState, read_state
from radvigil.model.engine import OnnxEngine, ThreadSetting
from radvigil.registry import LoadedModel, Registry

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """A loaded version: ONNX engine, card, and (when present) its monitoring profile."""

    loaded: LoadedModel
    alias: str
    engine: OnnxEngine
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    profile: object | None = None
    _torch: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def card(self) -> dict:
        return self.loaded.card

    @property
    def classes(self) -> list[str]:
        return list(self.card["task"]["classes"])

    @property
    def findings(self) -> list[str]:
        return list(self.card["task"]["findings"])

    @property
    def thresholds(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.card["thresholds"].items()}

    @property
    def size(self) -> int:
        return int(self.card["input"]["size"])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.engine.run(batch)

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
                model = build_classifier(self.card["backbone"], len(self.classes))
                model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
                self._torch = model.eval()
            return self._torch


def load_served(
    registry: Registry, ref: str, alias: str, threads: ThreadSetting = "auto"
) -> ServedModel:
    loaded = registry.load(ref)
    served = ServedModel(loaded, alias, OnnxEngine(loaded.onnx_path, threads=threads))
    if loaded.profile_dir is not None:
        from radvigil.monitoring.profile import ReferenceProfile

        served.profile = ReferenceProfile.from_path(loaded.profile_dir)
    return served


class ModelManager:
    """Holds the champion (and challenger) and follows their aliases in the registry."""

    def __init__(
        self, registry: Registry, name: str, poll_seconds: float, threads: ThreadSetting = "auto"
    ) -> None:
        self.registry = registry
        self.name = name
        self.poll_seconds = poll_seconds
        self.threads = threads
        self.champion: ServedModel | None = None
        self.challenger: ServedModel | None = None
        self.rollout = RolloutState()
        self.last_error: str | None = None
        self.load_failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load whatever the aliases point at now; True when anything changed."""
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
            if current is not None and current.version == str(mv.version):
                continue
            try:
                served = load_served(
                    self.registry, f"{self.name}/{mv.version}", alias, self.threads
                )
            except (RadvigilError, OSError, ValueError) as exc:
                self._failed(
                    f"version {mv.version} ({alias}) failed to load, keeping "
                    f"{current.version if current else 'nothing'}: {exc}"
                )
                continue
            setattr(self, alias, served)
            changed = True
            log.warning("now serving %s/%s as %s", self.name, served.version, alias)
        return changed

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
            self.refresh()

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
                f"(radvigil train --alias champion)"
            )
        return champion
