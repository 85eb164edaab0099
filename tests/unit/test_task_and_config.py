"""Task definitions and training configs fail fast with one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from radvigil.errors import ConfigError, DataError
from radvigil.model.config import load_config
from radvigil.task import load_task, shipped_tasks

REPO = Path(__file__).resolve().parents[2]


def test_shipped_tasks_load() -> None:
    assert {"chest-pneumonia", "chest-pneumonia-subtype", "chest-3class"} <= set(shipped_tasks())
    task = load_task("chest-pneumonia-subtype")
    rows = [
        {"label": "normal", "pneumonia_subtype": ""},
        {"label": "pneumonia", "pneumonia_subtype": "bacteria"},
        {"label": "pneumonia", "pneumonia_subtype": "virus"},
    ]
    assert task.targets(rows) == ["normal", "bacterial", "viral"]


def test_unknown_task_lists_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"shipped tasks: .*chest-pneumonia"):
        load_task("chest-fracture")


def test_three_class_task_refuses_without_tb() -> None:
    task = load_task("chest-3class")
    with pytest.raises(DataError, match=r"no examples of class\(es\) \['tuberculosis'\]"):
        task.check_labels(["normal", "pneumonia"])


def test_labels_outside_task_are_refused() -> None:
    with pytest.raises(DataError, match="does not know labels \\['covid19'\\]"):
        load_task("chest-pneumonia").check_labels(["normal", "pneumonia", "covid19"])


def test_shipped_configs_are_valid() -> None:
    for name in ("fast", "full", "demo", "subtype"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert load_task(cfg.task).classes[0] == "normal"
    assert load_config(REPO / "configs" / "subtype.yaml").task == "chest-pneumonia-subtype"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("backbone: resnet_does_not_exist\n", "backbone: Value error, unknown backbone"),
        ("weights: /no/such/weights.pt\n", "weights: Value error, weights file /no/such"),
        ("epochs: 0\n", "epochs: Input should be greater than or equal to 1"),
        ("epochs: [1\n", "not valid YAML"),
    ],
)
def test_bad_configs_fail_with_one_message(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Path("/no/such/config.yaml"))
