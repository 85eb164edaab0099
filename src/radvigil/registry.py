"""The only module that talks to MLflow: runs, dataset inputs, model versions, aliases, lineage.

Works with the embedded SQLite store under the home (default) or an MLflow server
(``MLFLOW_TRACKING_URI=http://...``). Callers see radvigil's own frozen types
(:class:`VersionInfo`, :class:`RunInfo`, :class:`AliasEvent`, :class:`RegisteredModelInfo`),
never an MLflow entity, and only radvigil's errors: every MLflow call runs inside
:func:`_mapped`, which turns MLflow's errors into :class:`RegistryError` (or
:class:`NotFoundError`), as httpx's ``map_httpcore_exceptions`` does for httpcore.
The tag keys radvigil writes on runs, versions and registered models live in :class:`Tag`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx
from pydantic import ValidationError

from radvigil.errors import ModelError, NotFoundError, RadvigilError, RegistryError
from radvigil.model.card import ModelCard

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
ALIASES = ("champion", "challenger", "previous")
PIP_REQUIREMENTS = ["onnx==1.23.2", "onnxruntime==1.32.0", "numpy==2.4.6"]
CARD_DIR = "radvigil"
INT8_FILE = "model.int8.onnx"  # the static int8 QDQ graph, beside the card
Precision = Literal["fp32", "int8"]


class Tag:
    """The tag keys radvigil writes on MLflow runs, model versions and registered models."""

    PREFIX: Final = "radvigil."
    # runs and model versions: lineage
    DATA_VERSION: Final = "radvigil.data_version"
    CODE_COMMIT: Final = "radvigil.code_commit"
    TASK: Final = "radvigil.task"
    KIND: Final = "radvigil.kind"  # tuning | tuning-trial
    THRESHOLDS: Final = "radvigil.thresholds"
    TEMPERATURE: Final = "radvigil.temperature"
    WEIGHTS_SHA256: Final = "radvigil.weights_sha256"
    RAY_RUN: Final = "radvigil.ray_run"
    BEST_TRIAL: Final = "radvigil.best_trial"
    ERROR: Final = "radvigil.error"
    NOTE: Final = "radvigil.note"
    IMPORTED: Final = "radvigil.imported"  # sha256 of an imported ONNX file
    PARENT_VERSION: Final = "radvigil.parent_version"
    PROBLEM_CASES: Final = "radvigil.problem_cases"
    RETRAINED_FROM: Final = "radvigil.retrained_from"
    FEEDBACK_IDS: Final = "radvigil.feedback_ids"
    RECALIBRATED_FROM: Final = "radvigil.recalibrated_from"
    SITE_CALIBRATION: Final = "radvigil.site_calibration"
    # model versions: the gate verdict and the rollout steps taken
    GATE: Final = "radvigil.gate"
    STEPS: Final = ("shadow", "canary", "promoted", "rejected", "rolled_back")
    # registered models: the rollout state and the alias history (one tag per event)
    ROLLOUT: Final = "radvigil.rollout"
    ALIAS_EVENT: Final = "radvigil.alias_event."

    @staticmethod
    def gate(precision: Precision = "fp32") -> str:
        """The version tag holding the gate verdict of its fp32 graph, or of its int8 graph."""
        return Tag.GATE if precision == "fp32" else f"{Tag.GATE}.{precision}"

    @staticmethod
    def step(step: str) -> str:
        """The version tag recording a rollout step (``shadow``, ``promoted``, ...)."""
        return f"{Tag.PREFIX}{step}"


def _when(ms: int | None) -> datetime | None:
    """An MLflow millisecond timestamp as an aware datetime (None when MLflow has none)."""
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version: where it came from and what radvigil recorded on it."""

    name: str
    version: str
    run_id: str
    created: datetime
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def radvigil_tags(self) -> dict[str, str]:
        """radvigil's own tags, without the ``radvigil.`` prefix."""
        return {
            k.removeprefix(Tag.PREFIX): v for k, v in self.tags.items() if k.startswith(Tag.PREFIX)
        }

    @classmethod
    def _of(cls, mv: Any) -> VersionInfo:
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)  # MLflow sets it
        return cls(mv.name, str(mv.version), mv.run_id or "", created, dict(mv.tags))


@dataclass(frozen=True)
class DatasetInputInfo:
    """A dataset a run logged as an input: its name (the data version), digest and context."""

    name: str
    digest: str
    context: str


@dataclass(frozen=True)
class RunInfo:
    """One MLflow run as radvigil reads it: status, parameters, final metrics, tags, inputs."""

    run_id: str
    status: str
    started: datetime | None
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    datasets: tuple[DatasetInputInfo, ...] = ()

    @classmethod
    def _of(cls, run: Any) -> RunInfo:
        datasets = tuple(
            DatasetInputInfo(
                d.dataset.name,
                d.dataset.digest,
                next((t.value for t in d.tags if t.key == "mlflow.data.context"), ""),
            )
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        )
        return cls(
            run.info.run_id,
            run.info.status,
            _when(run.info.start_time),
            dict(run.data.params),
            dict(run.data.metrics),
            dict(run.data.tags),
            datasets,
        )


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias, as the registry's history records it (``version`` None: removed)."""

    time: str
    alias: str
    version: str | None
    actor: str | None = None
    reason: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class RegisteredModelInfo:
    """A registered model: its aliases (alias -> version) and its tags."""

    name: str
    aliases: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def _of(cls, model: Any) -> RegisteredModelInfo:
        return cls(
            model.name, {k: str(v) for k, v in model.aliases.items()}, dict(model.tags or {})
        )


# MLflow error codes meaning "there is no such thing". A missing alias is reported as
# INVALID_PARAMETER_VALUE by MLflow's stores, so lookups by alias add that code.
_MISSING = frozenset({"RESOURCE_DOES_NOT_EXIST"})
_MISSING_ALIAS = _MISSING | {"INVALID_PARAMETER_VALUE"}


@contextmanager
def _mapped(
    what: str, missing: str | None = None, missing_codes: frozenset[str] = _MISSING
) -> Iterator[None]:
    """Run MLflow calls with their errors mapped to radvigil's: NotFoundError(``missing``) when
    MLflow's error code says the thing does not exist, RegistryError("cannot ``what``") else.

    MLflow raises outside its own exception tree too (requests, OSError, cloud SDKs when
    downloading artifacts), so anything but radvigil's own errors is mapped.
    """
    _mlflow()  # MLflow's environment defaults are set before its first import
    from mlflow.exceptions import MlflowException

    try:
        yield
    except RadvigilError:
        raise
    except MlflowException as exc:
        if missing is not None and exc.error_code in missing_codes:
            raise NotFoundError(missing) from exc
        raise RegistryError(f"cannot {what}: {exc.message}") from exc
    except Exception as exc:
        raise RegistryError(f"cannot {what}: {exc}") from exc


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
    card: ModelCard
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
                if self.card.imported is not None
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
    """MLflow tracking + model registry behind radvigil's own vocabulary and types."""

    def __init__(self, tracking_uri: str, artifacts_dir: Path, cache_dir: Path) -> None:
        self.tracking_uri = tracking_uri
        self.artifacts_dir = artifacts_dir
        self.cache_dir = cache_dir
        self._check_reachable()
        mlflow = _mlflow()
        self._client: MlflowClient = mlflow.MlflowClient(
            tracking_uri=tracking_uri, registry_uri=tracking_uri
        )

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
        with _mapped(f"open MLflow experiment {name!r}"):
            found = self._client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            location = None
            if not self.tracking_uri.startswith(("http://", "https://")):
                location = self.artifacts_dir.resolve().as_uri()
            return str(self._client.create_experiment(name, artifact_location=location))

    def resolve(self, ref: str | ModelRef) -> VersionInfo:
        """The model version a reference points at."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if ref.alias:
            with _mapped(f"resolve {ref}", f"no model version {ref}", _MISSING_ALIAS):
                return VersionInfo._of(self._client.get_model_version_by_alias(ref.name, ref.alias))
        with _mapped(f"resolve {ref}", f"no model version {ref}"):
            return VersionInfo._of(self._client.get_model_version(ref.name, str(ref.version)))

    def load(self, ref: str | ModelRef) -> LoadedModel:
        """Download (once, cached under the home) the ONNX graph, card and profile of a version."""
        mv = self.resolve(ref)
        folder = self.cache_dir / mv.name / mv.version
        with _mapped(f"download {mv.name}/{mv.version}"):
            if not (folder / "done").exists():
                folder.mkdir(parents=True, exist_ok=True)
                self._download(mv, folder)
                (folder / "done").touch()
        try:
            card = ModelCard.model_validate_json((folder / CARD_DIR / "card.json").read_bytes())
        except (OSError, ValidationError) as exc:
            raise ModelError(f"{mv.name}/{mv.version} has no readable model card: {exc}") from exc
        profile = folder / CARD_DIR / "profile"
        return LoadedModel(
            mv.name,
            mv.version,
            mv.run_id,
            folder / "model" / "model.onnx",
            card,
            folder,
            profile if profile.exists() else None,
        )

    def _download(self, mv: VersionInfo, folder: Path) -> None:
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
        current = self.registered_model(name).aliases.get(alias)
        if current is not None and current == str(version):
            return False
        with _mapped(f"set {name}@{alias}"):
            self._client.set_registered_model_alias(name, alias, str(version))
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
        return True

    def aliases(self, name: str) -> dict[str, str]:
        """The registered model's aliases as MLflow holds them now (alias -> version)."""
        return dict(self.registered_model(name).aliases)

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's tags as MLflow holds them now."""
        return dict(self.registered_model(name).tags)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        with _mapped(f"tag {name}"):
            self._client.set_registered_model_tag(name, key, value)

    def delete_model_tag(self, name: str, key: str) -> None:
        with _mapped(f"untag {name}"):
            self._client.delete_registered_model_tag(name, key)

    def registered_model(self, name: str) -> RegisteredModelInfo:
        """A registered model (NotFoundError when there is none by that name)."""
        with _mapped(f"read registered model {name!r}", f"no registered model {name!r}"):
            return RegisteredModelInfo._of(self._client.get_registered_model(name))

    def remove_alias(self, name: str, alias: str, actor: str, reason: str) -> None:
        with _mapped(f"remove {name}@{alias}"):
            self._client.delete_registered_model_alias(name, alias)
            self._record_event(
                name, {"alias": alias, "version": None, "actor": actor, "reason": reason}
            )

    def _record_event(self, name: str, event: dict[str, Any]) -> None:
        """Alias history lives in registered-model tags, one tag per event, time-ordered keys."""
        stamp = datetime.now(UTC)
        event = {"time": stamp.isoformat(timespec="seconds"), **event}
        key = f"{Tag.ALIAS_EVENT}{stamp.strftime('%Y%m%dT%H%M%S%f')}"
        self._client.set_registered_model_tag(name, key, json.dumps(event))

    def alias_history(self, name: str) -> list[AliasEvent]:
        """Every recorded move of the model's aliases, oldest first."""
        tags = self.registered_model(name).tags
        events = []
        for key in sorted(k for k in tags if k.startswith(Tag.ALIAS_EVENT)):
            try:
                raw = json.loads(tags[key])
            except ValueError as exc:
                raise RegistryError(f"the {key} tag of {name} is not JSON: {exc}") from exc
            events.append(
                AliasEvent(
                    time=str(raw.get("time", "")),
                    alias=str(raw.get("alias", "")),
                    version=None if raw.get("version") is None else str(raw["version"]),
                    actor=raw.get("actor"),
                    reason=raw.get("reason"),
                    previous=None if raw.get("previous") is None else str(raw["previous"]),
                )
            )
        return events

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        with _mapped(f"tag {name}/{version}"):
            self._client.set_model_version_tag(name, str(version), key, value)

    def versions(self, name: str | None = None) -> list[VersionInfo]:
        """Every version (of ``name``, or of every model), ordered by name and number."""
        query = f"name='{name}'" if name else ""
        with _mapped("list model versions"):
            found = [VersionInfo._of(mv) for mv in self._client.search_model_versions(query)]
        return sorted(found, key=lambda mv: (mv.name, int(mv.version)))

    def registered_models(self) -> list[RegisteredModelInfo]:
        with _mapped("list registered models"):
            return [RegisteredModelInfo._of(m) for m in self._client.search_registered_models()]

    def run(self, run_id: str) -> RunInfo:
        with _mapped(f"read run {run_id}", f"no run {run_id}"):
            return RunInfo._of(self._client.get_run(run_id))

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """A run's logged values of one metric as (step, value), in logging order."""
        with _mapped(f"read metric {key} of run {run_id}"):
            return [(m.step, m.value) for m in self._client.get_metric_history(run_id, key)]

    def delete_version(self, name: str, version: str) -> None:
        """Remove a version that must not stay registered (an import that failed after it)."""
        with _mapped(f"delete {name}/{version}"):
            self._client.delete_model_version(name, version)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        with _mapped(f"log {path.name} to run {run_id}"):
            self._client.log_artifact(run_id, str(path), artifact_path)

    def artifacts(self, run_id: str, path: str) -> list[str]:
        """The artifact paths a run holds under ``path``."""
        with _mapped(f"list artifacts of run {run_id}"):
            return [a.path for a in self._client.list_artifacts(run_id, path)]


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
        self._client = registry._client
        if parent_run_id:  # MLflow's UI nests a run under the run this tag names
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        experiment = registry.experiment_id(task)
        with _mapped("start an MLflow run"):
            run = self._client.create_run(experiment, run_name=run_name, tags=tags)
        self.run_id: str = run.info.run_id

    def set_tag(self, key: str, value: str) -> None:
        with _mapped(f"tag run {self.run_id}"):
            self._client.set_tag(self.run_id, key, value)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        with _mapped(f"log params to run {self.run_id}"):
            for start in range(0, len(items), 90):
                self._client.log_batch(self.run_id, params=items[start : start + 90])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(datetime.now(UTC).timestamp() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        with _mapped(f"log metrics to run {self.run_id}"):
            self._client.log_batch(self.run_id, metrics=items)

    def log_dataset(
        self, frame: Any, version_id: str, source: str, context: str = "training"
    ) -> None:
        mlflow = _mlflow()
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # a local path matches two equivalent source kinds
            warnings.filterwarnings("ignore", message="The specified dataset source")
            dataset = mlflow.data.from_pandas(frame, source=source, name=version_id)
        entity = DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]
        )
        with _mapped(f"log dataset to run {self.run_id}"):
            self._client.log_inputs(self.run_id, datasets=[entity])

    def log_figure(self, figure: Any, name: str) -> None:
        with _mapped(f"log figure to run {self.run_id}"):
            self._client.log_figure(self.run_id, figure, name)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with _mapped(f"log {path.name} to run {self.run_id}"):
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        with _mapped(f"log artifacts to run {self.run_id}"):
            self._client.log_artifacts(self.run_id, str(folder), artifact_path)

    def register_onnx(self, onnx_path: Path, name: str, example: Any) -> str:
        """Log the ONNX graph as the run's model and register it; returns the new version."""
        mlflow = _mlflow()
        import onnx

        with (
            _mapped(f"register model {name}"),
            _fluent_uri(self.registry.tracking_uri),
            mlflow.start_run(run_id=self.run_id),
        ):
            info = mlflow.onnx.log_model(
                onnx.load(str(onnx_path)),
                name="model",
                registered_model_name=name,
                pip_requirements=PIP_REQUIREMENTS,
                input_example=example,
                # radvigil serves with its own engine; MLflow's check of the input example
                # would otherwise ask for CUDA first and warn on every CPU machine
                onnx_execution_providers=["CPUExecutionProvider"],
            )
        return str(info.registered_model_version)

    def finish(self, status: str = "FINISHED") -> None:
        with _mapped(f"end run {self.run_id}"):
            self._client.set_terminated(self.run_id, status)
