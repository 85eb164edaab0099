"""Task definitions: which classes a model predicts, which of them are findings, and targets.

Tasks are YAML files validated by :class:`Task`; the shipped ones live in ``radvigil/tasks`` and a
user may pass the path of their own. A task travels inside every model version's card.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from radvigil.errors import ConfigError, DataError


class Task(BaseModel):
    """A classification task: classes, findings, input size and target sensitivities."""

    name: str
    description: str = ""
    classes: list[str] = Field(min_length=2)
    findings: list[str] = Field(min_length=1)
    label_columns: list[str] = Field(default_factory=lambda: ["label"], min_length=1)
    label_map: dict[str, str] = Field(default_factory=dict)
    input_size: int = Field(default=128, ge=32, le=1024)
    target_sensitivity: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Task:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be unique")
        unknown = [f for f in self.findings if f not in self.classes]
        if unknown:
            raise ValueError(f"findings {unknown} are not among classes {self.classes}")
        for finding, target in self.target_sensitivity.items():
            if finding not in self.findings:
                raise ValueError(f"target_sensitivity names {finding!r}, which is not a finding")
            if not 0.0 < target <= 1.0:
                raise ValueError(f"target_sensitivity for {finding!r} must be in (0, 1]")
        return self

    def target_for(self, finding: str) -> float:
        """The sensitivity the operating threshold of ``finding`` must reach (default 0.98)."""
        return self.target_sensitivity.get(finding, 0.98)

    def class_index(self, label: str) -> int:
        return self.classes.index(label)

    def targets(self, rows: list[dict[str, Any]]) -> list[str]:
        """Map manifest rows to this task's class names (first non-empty label column wins)."""
        out: list[str] = []
        for row in rows:
            raw = next(
                (str(row[c]) for c in self.label_columns if row.get(c) not in (None, "")), ""
            )
            out.append(self.label_map.get(raw, raw))
        return out

    def check_labels(self, labels: list[str]) -> None:
        """Refuse labels the task does not know, and classes with no example, naming both."""
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise DataError(
                f"task {self.name!r} does not know labels {unknown}; it predicts {self.classes}. "
                "Import only matching sources (radvigil data import ... --where "
                "source_dataset=...) or pick another task."
            )
        empty = [c for c in self.classes if c not in set(labels)]
        if empty:
            raise DataError(
                f"task {self.name!r} has no examples of class(es) {empty}; import data with "
                f"these labels first (e.g. tuberculosis images for chest-3class)."
            )


def shipped_tasks() -> list[str]:
    """Names of the tasks bundled with radvigil."""
    folder = resources.files("radvigil") / "tasks"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_task(name_or_path: str | Path) -> Task:
    """Load a shipped task by name or a task YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    elif str(name_or_path) in shipped_tasks():
        text = (resources.files("radvigil") / "tasks" / f"{name_or_path}.yaml").read_text()
    else:
        raise ConfigError(
            f"unknown task {str(name_or_path)!r}; shipped tasks: {shipped_tasks()} "
            "(or give the path of a task YAML file)"
        )
    return task_from_dict(yaml.safe_load(text))


def task_from_dict(data: Any) -> Task:
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid task definition: {exc.errors()[0]['msg']}") from exc
