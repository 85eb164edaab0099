"""`radvigil evaluate` and `radvigil gate` on a real registered model and real bundled images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.config import reset_settings
from radvigil.errors import DataError
from radvigil.evaluation import criteria_from_dict
from radvigil.loop.evaluation import gate_version, score
from radvigil.registry import Tag

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def cli_home(trained_home, monkeypatch: pytest.MonkeyPatch):
    home, outcome = trained_home
    monkeypatch.setenv("RADVIGIL_HOME", str(home.root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    reset_settings()
    yield home, outcome
    reset_settings()


def test_evaluate_writes_report_matching_sklearn(cli_home, tmp_path: Path) -> None:
    home, _ = cli_home
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["evaluate", "chest-pneumonia@champion", "--data", home.data_version, "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "sensitivity" in result.output
    html = (out / "evaluation_report.html").read_text()
    assert "Decision support" in html or "decision support" in html
    numbers = json.loads((out / "evaluation_report.json").read_text())
    loaded = home.registry.load("chest-pneumonia@champion")
    scored = score(loaded, home.catalog.load(home.data_version), "test")
    expected = roc_auc_score([label == "pneumonia" for label in scored.labels], scored.probs[:, 1])
    assert json.dumps(numbers).count(f"{expected:.6f}"[:6]) >= 1
    artifacts = home.registry.artifacts(loaded.run_id, "evaluation")
    assert artifacts, "report not logged to the model's run"


def _criteria(tmp_path: Path, gates: list[dict]) -> Path:
    path = tmp_path / "gates.yaml"
    path.write_text(json.dumps({"n_resamples": 300, "gates": gates}))
    return path


def test_gate_fails_with_exit_1_and_names_the_finding(cli_home, tmp_path: Path) -> None:
    home, _ = cli_home
    criteria = _criteria(
        tmp_path,
        [
            {"kind": "min_specificity", "default": 0.99},
            {"kind": "min_sensitivity", "default": 0.98},
        ],
    )
    result = CliRunner().invoke(
        app,
        [
            "gate",
            "chest-pneumonia@champion",
            "--data",
            home.data_version,
            "--criteria",
            str(criteria),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "pneumonia" in result.output
    mv = home.registry.resolve("chest-pneumonia@champion")
    assert json.loads(mv.tags[Tag.GATE])["passed"] is False


def test_copy_of_champion_passes_non_inferiority(cli_home, tmp_path: Path) -> None:
    home, _ = cli_home
    criteria = _criteria(
        tmp_path, [{"kind": "non_inferiority", "metrics": ["sensitivity", "auc"], "margin": 0.02}]
    )
    result = CliRunner().invoke(
        app,
        [
            "gate",
            "chest-pneumonia@champion",
            "--data",
            home.data_version,
            "--against",
            "champion",
            "--criteria",
            str(criteria),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_model_missing_sensitivity_floor_fails_with_evidence(trained_home) -> None:
    home, _ = trained_home
    loaded = home.registry.load("chest-pneumonia@champion")
    strict_card = loaded.card.model_copy(update={"thresholds": {"pneumonia": 0.999}})
    strict = dataclasses.replace(loaded, card=strict_card)
    criteria = criteria_from_dict(
        {"n_resamples": 300, "gates": [{"kind": "min_sensitivity", "default": 0.98}]}
    )
    verdict = gate_version(criteria, strict, None, home.catalog.load(home.data_version), "test")
    assert not verdict.passed
    row = verdict.failures[0]
    assert row.finding == "pneumonia" and row.threshold == 0.98
    assert row.value is not None and row.value < 0.98 and row.ci_low is not None


def test_unknown_labels_are_refused(trained_home, shared_data: Path, tmp_path: Path) -> None:
    from radvigil.data.catalog import DatasetCatalog
    from radvigil.data.importers import from_csv

    home, _ = trained_home
    result = from_csv(
        shared_data / "cxr" / "manifest.csv", where={"source_dataset": "hannover_mhh_covid19_cxr"}
    )
    loaded = home.registry.load("chest-pneumonia@champion")
    covid = DatasetCatalog(tmp_path).load(DatasetCatalog(tmp_path).save(result.version))
    with pytest.raises(DataError, match=r"labels \['covid19'\]"):
        score(loaded, covid, "test")
