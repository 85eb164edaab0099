"""``radvigil demo`` accepts an existing empty home and refuses a non-empty one without --fresh."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.config import reset_settings


@pytest.fixture()
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("RADVIGIL_HOME", str(home))
    reset_settings()
    yield home
    reset_settings()


def test_an_existing_empty_home_is_used(empty_home: Path) -> None:
    # A missing config stops the demo right after the home check: no FileExistsError before it.
    result = CliRunner().invoke(app, ["demo", "--config", str(empty_home / "missing.yaml")])
    assert result.exit_code == 2, result.output
    assert "missing.yaml" in result.output and (empty_home / "monitoring.yaml").exists()


def test_a_used_home_needs_fresh(empty_home: Path) -> None:
    (empty_home / "something").write_text("x")
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 2 and "pass --fresh" in result.output
