"""``radvigil data import|validate|shift`` through the real Typer app, in a temp home."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.config import Settings
from radvigil.data.catalog import DatasetCatalog
from radvigil.data.io import read_image
from radvigil.loop.training import qc_checked_version
from tests.unit.qc_images import make_problem_folder

KERMANY = "source_dataset=kermany_guangzhou_pediatric_cxr"
runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.slow  # CPU-heavy: left out of `make check`, run by `make test`
def test_import_and_validate_the_full_kermany_set(
    home: Settings, shared_data: Path, tmp_path: Path
) -> None:
    out = _ok(["data", "import", str(shared_data / "cxr" / "manifest.csv"), "--where", KERMANY])
    vid = out.strip().splitlines()[-1]
    version = DatasetCatalog(home.datasets_dir).load(vid)
    assert len(version.frame) == 5840
    counts = version.frame.groupby(["split", "label"]).size().to_dict()
    assert counts[("train", "normal")] == 1207
    assert counts[("train", "pneumonia")] == 3492
    assert counts[("val", "normal")] == 134
    assert counts[("val", "pneumonia")] == 383
    assert counts[("test", "normal")] + counts[("test", "pneumonia")] == 624

    report_path = tmp_path / "qc.json"
    out = _ok(["data", "validate", vid, "--json", str(report_path)])
    assert "exact-duplicate groups: 30 (0 cross splits)" in out
    report = json.loads(report_path.read_text())
    exact = [g for g in report["groups"] if g["kind"] == "exact"]
    assert len(exact) == 30
    assert all(len(set(g["splits"])) == 1 and len(set(g["labels"])) == 1 for g in exact)
    assert not [f for f in report["flags"] if f["severity"] == "fail"]


def test_errors_are_one_line_and_exit_code_2(home: Settings) -> None:
    result = runner.invoke(app, ["data", "import", "missing.csv"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error (data_error): missing.csv does not exist"]
    result = runner.invoke(app, ["data", "shift", "latest", "--shift", "blur"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error (not_found): no dataset versions yet")


def test_validate_exclude_saves_a_version_without_failures(
    home: Settings, tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    images = tmp_path / "images"
    expected = make_problem_folder(images, xrays)
    (images / "test" / "pneumonia" / "missing.png").unlink()  # rejected at import
    parent = _ok(["data", "import", str(images)]).strip().splitlines()[-1]
    out = _ok(["data", "validate", parent, "--exclude", "--name", "clean"])
    child = out.strip().splitlines()[-1]
    assert child != parent
    catalog = DatasetCatalog(home.datasets_dir)
    clean = catalog.load("clean")
    assert clean.id == child
    excluded = {e["path"] for e in clean.meta["qc_exclude"]["excluded"]}
    assert excluded == set(expected) - {"test/pneumonia/missing.png", "test/pneumonia/changed.png"}
    assert clean.meta["derived_from"] == parent
    assert (home.reports_dir / f"qc-{parent}.json").is_file()


def test_shift_writes_png_images_and_records_the_recipe(home: Settings, bundled: Path) -> None:
    parent = _ok(["data", "import", str(bundled / "manifest.csv")]).strip().splitlines()[-1]
    args = ["data", "shift", parent, "--split", "test", "--seed", "4", "--name", "dim"]
    args += ["--shift", "gamma:gamma=1.8", "--shift", "poisson_noise:strength=0.5"]
    args += ["--prevalence", "pneumonia=0.5", "--where", "view_position=AP"]
    child = _ok(args).strip().splitlines()[-1]
    version = DatasetCatalog(home.datasets_dir).load("dim")
    assert version.id == child
    assert version.root == home.datasets_dir / child / "images"
    assert set(version.frame["split"]) == {"test"}
    assert (version.frame["label"] == "pneumonia").mean() < 0.4
    first = version.frame.iloc[0]
    image = read_image(version.root / first["path"])
    assert image.meta.source_format == "png"
    derivation = version.meta["derivation"]
    assert derivation["seed"] == 4
    assert derivation["shifts"][0] == {"name": "gamma", "params": {"gamma": 1.8}}
    assert derivation["shifts"][1] == {"name": "poisson_noise", "params": {"level": 0.025}}
    assert derivation["prevalence"] == {"pneumonia": 0.5}
    assert version.meta["derived_from"] == parent
    assert _ok(args).strip().splitlines()[-1] == child  # same recipe, same version
    assert not list((home.datasets_dir / ".staging").iterdir())


def test_validate_exits_1_when_an_image_fails_and_fail_on_sets_the_bar(
    home: Settings, tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    images = tmp_path / "images"
    make_problem_folder(images, xrays)
    (images / "test" / "pneumonia" / "missing.png").unlink()
    parent = _ok(["data", "import", str(images)]).strip().splitlines()[-1]
    failed = runner.invoke(app, ["data", "validate", parent])
    assert failed.exit_code == 1, failed.output
    assert "QC error:" in failed.stderr
    assert (home.reports_dir / f"qc-{parent}.json").is_file()  # the report is written first
    # --exclude judges the saved version; its warnings fail only with --fail-on warning
    _ok(["data", "validate", parent, "--exclude", "--name", "clean"])
    _ok(["data", "validate", "clean"])
    strict = runner.invoke(app, ["data", "validate", "clean", "--fail-on", "warning"])
    assert strict.exit_code == 1, strict.output
    assert "QC warning:" in strict.stderr


def test_train_refuses_a_version_with_failing_images_unless_told_to_exclude(
    home: Settings, tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    images = tmp_path / "images"
    expected = make_problem_folder(images, xrays)
    (images / "test" / "pneumonia" / "missing.png").unlink()
    parent = _ok(["data", "import", str(images)]).strip().splitlines()[-1]
    config = Path(__file__).parents[2] / "configs" / "fast.yaml"  # refused before training
    refused = runner.invoke(app, ["train", "--config", str(config), "--data", parent])
    assert refused.exit_code == 2
    assert "fail QC" in refused.stderr and "--exclude-failing" in refused.stderr
    catalog = DatasetCatalog(home.datasets_dir)
    child = qc_checked_version(catalog, parent, exclude_failing=True)
    assert child != parent
    excluded = {e["path"] for e in catalog.load(child).meta["qc_exclude"]["excluded"]}
    assert excluded == set(expected) - {"test/pneumonia/missing.png", "test/pneumonia/changed.png"}
    assert qc_checked_version(catalog, child) == child  # a clean version passes as it is
