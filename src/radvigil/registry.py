"""The only module that talks to MLflow: runs, dataset inputs, model versions, aliases, lineage.

Works with the embedded SQLite store under the home (default) or an MLflow server
(``MLFLOW_TRACKING_URI=http://...``). Every MLflow error is mapped to :class:`RegistryError`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from radvigil.errors import ModelError, NotFoundError, RegistryError

log = logging.getLogger(__name__)
ALIASES = ("champion", "challenger", "previous")
PIP_REQUIREMENTS = ["onnx==1.23.2", "onnxruntime==1.32.0", "numpy==2.4.6"]
CARD_DIR = "radvigil"
INT8_FILE = "model.int8.onnx"  # the static int8 QDQ graph, beside the card
IMPORTED_TAG = "radvigil.imported"  # version tag: sha256 of an imported ONNX file
Precision = Literal["fp32", "int8"]


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``NAME``, ``NAME@alias`` or ``NAME/VERSION`` reference."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if "@" in text:
            name, alias = text.split("@", 1)
            return cls(name, alias=alias)
        for sep in ("/", ":"):
            if sep in text:
                name, version = text.split(sep, 1)
                return cls(name, version=version)
        return cls(text, alias="champion")

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class LoadedModel:
    """A model version on local disk: its ONNX file, card and (optional) reference profile."""

    name: str
    version: str
    run_id: str
    onnx_path: Path
    card: dict[str, Any]
    folder: Path
    profile_dir: Path | None
    precision: Precision = "fp32"

    def at_precision(self, precision: Precision) -> LoadedModel:
        """This version with its ``precision`` graph: the fp32 export, or the static int8 QDQ
        graph trained with ``quantize: true`` (ModelError when the version has none)."""
        if precision == "fp32":
            return replace(self, onnx_path=self.folder / "model" / "model.onnx", precision="fp32")
        path = self.folder / CARD_DIR / INT8_FILE
        if not path.is_file():
            how = (
                "imported versions are served in fp32 only"
                if self.card.get("imported")
                else "train it with quantize: true"
            )
            raise ModelError(f"{self.name}/{self.version} has no int8 graph ({how})")
        return replace(self, onnx_path=path, precision=precision)


def _mlflow():
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in our output
    import mlflow

    return mlflow


def quiet_mlflow() -> None:
    """Silence MLflow's own console messages (log lines and prints such as "Successfully
    registered model"), for front ends that print their own account of what happened."""
    _mlflow()
    import mlflow.onnx  # importing the flavours turns MLflow's stream back on
    import mlflow.pyfunc  # noqa: F401
    from mlflow.utils.logging_utils import disable_logging

    disable_logging()


@contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global (fluent) API at ``uri`` for one call, then restore it.

    mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment, which would
    leak into radvigil's settings; restoring keeps the process state as it was.
    """
    mlflow = _mlflow()
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    previous = mlflow.get_tracking_uri() if saved["MLFLOW_TRACKING_URI"] else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        if previous:
            mlflow.set_tracking_uri(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def git_commit() -> str:
    """The code commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


class Registry:
    """MLflow tracking + model registry behind radvigil's own vocabulary."""

    def __init__(self, tracking_uri: str, artifacts_dir: Path, cache_dir: Path) -> None:
        self.tracking_uri = tracking_uri
        self.artifacts_dir = artifacts_dir
        self.cache_dir = cache_dir
        self._check_reachable()
        mlflow = _mlflow()
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _check_reachable(self) -> None:
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        # MLflow's own client reads MLFLOW_TRACKING_USERNAME/PASSWORD (its basic-auth app);
        # this probe sends them too, so a protected server answers it.
        user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
        auth = (user, password or "") if user else None
        try:
            httpx.get(
                self.tracking_uri.rstrip("/") + "/health", timeout=3.0, auth=auth
            ).raise_for_status()
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"MLflow tracking server {self.tracking_uri} is unreachable ({exc}); "
                "start it or unset MLFLOW_TRACKING_URI to use the local store"
            ) from exc

    def experiment_id(self, task: str) -> str:
        """The experiment of a task, created (with artifacts under the home) on first use."""
        name = f"radvigil/{task}"
        try:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return found.experiment_id
            location = None
            if not self.tracking_uri.startswith(("http://", "https://")):
                location = self.artifacts_dir.resolve().as_uri()
            return self.client.create_experiment(name, artifact_location=location)
        except Exception as exc:
            raise RegistryError(f"cannot open MLflow experiment {name!r}: {exc}") from exc

    def resolve(self, ref: str | ModelRef):
        """The MLflow ModelVersion a reference points at."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        try:
            if ref.alias:
                return self.client.get_model_version_by_alias(ref.name, ref.alias)
            return self.client.get_model_version(ref.name, ref.version)
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                raise NotFoundError(f"no model version {ref}") from exc
            raise RegistryError(f"cannot resolve {ref}: {exc}") from exc

    def load(self, ref: str | ModelRef) -> LoadedModel:
        """Download (once, cached under the home) the ONNX graph, card and profile of a version."""
        mv = self.resolve(ref)
        folder = self.cache_dir / mv.name / str(mv.version)
        try:
            if not (folder / "done").exists():
                folder.mkdir(parents=True, exist_ok=True)
                self._download(mv, folder)
                (folder / "done").touch()
        except Exception as exc:
            raise RegistryError(f"cannot download {mv.name}/{mv.version}: {exc}") from exc
        card = json.loads((folder / CARD_DIR / "card.json").read_text())
        profile = folder / CARD_DIR / "profile"
        return LoadedModel(
            mv.name,
            str(mv.version),
            mv.run_id,
            folder / "model" / "model.onnx",
            card,
            folder,
            profile if profile.exists() else None,
        )

    def _download(self, mv, folder: Path) -> None:
        mlflow = _mlflow()
        with _fluent_uri(self.tracking_uri):  # models:/ URIs resolve through the global registry
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{mv.name}/{mv.version}", dst_path=str(folder / "model")
            )
            mlflow.artifacts.download_artifacts(
                run_id=mv.run_id,
                artifact_path=CARD_DIR,
                dst_path=str(folder),
                tracking_uri=self.tracking_uri,
            )

    def set_alias(self, name: str, alias: str, version: str, actor: str, reason: str) -> bool:
        """Point ``alias`` at ``version``; returns False (and records nothing) if it already is."""
        try:
            current = self.client.get_registered_model(name).aliases.get(alias)
        except Exception as exc:
            raise NotFoundError(f"no registered model {name!r}") from exc
        if current is not None and str(current) == str(version):
            return False
        try:
            self.client.set_registered_model_alias(name, alias, str(version))
            self._record_event(
                name,
                {
                    "alias": alias,
                    "version": str(version),
                    "previous": current,
                    "actor": actor,
                    "reason": reason,
                },
            )
        except Exception as exc:
            raise RegistryError(f"cannot set {name}@{alias}: {exc}") from exc
        return True

    def aliases(self, name: str) -> dict[str, str]:
        """The registered model's aliases as MLflow holds them now (alias -> version)."""
        return {k: str(v) for k, v in self._registered(name).aliases.items()}

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's tags as MLflow holds them now."""
        return dict(self._registered(name).tags)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        try:
            self.client.set_registered_model_tag(name, key, value)
        except Exception as exc:
            raise RegistryError(f"cannot tag {name}: {exc}") from exc

    def _registered(self, name: str):
        try:
            return self.client.get_registered_model(name)
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                raise NotFoundError(f"no registered model {name!r}") from exc
            raise RegistryError(f"cannot read registered model {name!r}: {exc}") from exc

    def remove_alias(self, name: str, alias: str, actor: str, reason: str) -> None:
        try:
            self.client.delete_registered_model_alias(name, alias)
            self._record_event(
                name, {"alias": alias, "version": None, "actor": actor, "reason": reason}
            )
        except Exception as exc:
            raise RegistryError(f"cannot remove {name}@{alias}: {exc}") from exc

    def _record_event(self, name: str, event: dict[str, Any]) -> None:
        """Alias history lives in registered-model tags, one tag per event, time-ordered keys."""
        stamp = datetime.now(UTC)
        event = {"time": stamp.isoformat(timespec="seconds"), **event}
        key = f"radvigil.alias_event.{stamp.strftime('%Y%m%dT%H%M%S%f')}"
        self.client.set_registered_model_tag(name, key, json.dumps(event))

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        tags = self.client.get_registered_model(name).tags
        keys = sorted(k for k in tags if k.startswith("radvigil.alias_event."))
        return [json.loads(tags[k]) for k in keys]

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        try:
            self.client.set_model_version_tag(name, str(version), key, value)
        except Exception as exc:
            raise RegistryError(f"cannot tag {name}/{version}: {exc}") from exc

    def versions(self, name: str | None = None) -> list:
        query = f"name='{name}'" if name else ""
        try:
            found = self.client.search_model_versions(query)
        except Exception as exc:
            raise RegistryError(f"cannot list model versions: {exc}") from exc
        return sorted(found, key=lambda mv: (mv.name, int(mv.version)))

    def registered_models(self) -> list:
        try:
            return self.client.search_registered_models()
        except Exception as exc:
            raise RegistryError(f"cannot list registered models: {exc}") from exc

    def run(self, run_id: str):
        try:
            return self.client.get_run(run_id)
        except Exception as exc:
            raise RegistryError(f"cannot read run {run_id}: {exc}") from exc

    def delete_version(self, name: str, version: str) -> None:
        """Remove a version that must not stay registered (an import that failed after it)."""
        try:
            self.client.delete_model_version(name, version)
        except Exception as exc:
            raise RegistryError(f"cannot delete {name}/{version}: {exc}") from exc

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        try:
            self.client.log_artifact(run_id, str(path), artifact_path)
        except Exception as exc:
            raise RegistryError(f"cannot log {path.name} to run {run_id}: {exc}") from exc


class TrainingRun:
    """One MLflow run of a training job: params, per-epoch metrics, data input, artifacts, model.

    Uses explicit run ids (no global active run) so it is safe beside a serving thread.
    """

    def __init__(
        self,
        registry: Registry,
        task: str,
        run_name: str,
        tags: dict[str, str],
        parent_run_id: str | None = None,
    ) -> None:
        self.registry = registry
        client = registry.client
        if parent_run_id:  # MLflow's UI nests a run under the run this tag names
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        try:
            run = client.create_run(registry.experiment_id(task), run_name=run_name, tags=tags)
        except Exception as exc:
            raise RegistryError(f"cannot start an MLflow run: {exc}") from exc
        self.run_id = run.info.run_id

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise RegistryError(f"MLflow {what} failed: {exc}") from exc

    def set_tag(self, key: str, value: str) -> None:
        self._call("set tag", self.registry.client.set_tag, self.run_id, key, value)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 90):
            self._call(
                "log params",
                self.registry.client.log_batch,
                self.run_id,
                params=items[start : start + 90],
            )

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(datetime.now(UTC).timestamp() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._call("log metrics", self.registry.client.log_batch, self.run_id, metrics=items)

    def log_dataset(self, frame, version_id: str, source: str, context: str = "training") -> None:
        mlflow = _mlflow()
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # a local path matches two equivalent source kinds
            warnings.filterwarnings("ignore", message="The specified dataset source")
            dataset = mlflow.data.from_pandas(frame, source=source, name=version_id)
        entity = DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]
        )
        self._call("log dataset", self.registry.client.log_inputs, self.run_id, datasets=[entity])

    def log_figure(self, figure, name: str) -> None:
        self._call("log figure", self.registry.client.log_figure, self.run_id, figure, name)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call(
            "log artifact", self.registry.client.log_artifact, self.run_id, str(path), artifact_path
        )

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        self._call(
            "log artifacts",
            self.registry.client.log_artifacts,
            self.run_id,
            str(folder),
            artifact_path,
        )

    def register_onnx(self, onnx_path: Path, name: str, example) -> str:
        """Log the ONNX graph as the run's model and register it; returns the new version."""
        mlflow = _mlflow()
        import onnx

        def _log() -> Any:
            with _fluent_uri(self.registry.tracking_uri), mlflow.start_run(run_id=self.run_id):
                return mlflow.onnx.log_model(
                    onnx.load(str(onnx_path)),
                    name="model",
                    registered_model_name=name,
                    pip_requirements=PIP_REQUIREMENTS,
                    input_example=example,
                    # radvigil serves with its own engine; MLflow's check of the input example
                    # would otherwise ask for CUDA first and warn on every CPU machine
                    onnx_execution_providers=["CPUExecutionProvider"],
                )

        info = self._call("register model", _log)
        return str(info.registered_model_version)

    def finish(self, status: str = "FINISHED") -> None:
        self._call("end run", self.registry.client.set_terminated, self.run_id, status)
