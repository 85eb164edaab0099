"""Production settings: the audit key must be a real secret, and secrets may come from files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from radvigil.config import Settings


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUDIT_KEY", "AUDIT_KEY_FILE", "DATABASE_URL", "DATABASE_URL_FILE", "ENV"):
        monkeypatch.delenv(f"RADVIGIL_{name}", raising=False)


@pytest.mark.parametrize("key", [None, "", "   "])
def test_production_refuses_a_missing_or_empty_audit_key(
    monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    monkeypatch.setenv("RADVIGIL_ENV", "production")
    if key is not None:
        monkeypatch.setenv("RADVIGIL_AUDIT_KEY", key)
    with pytest.raises(ValidationError, match="RADVIGIL_AUDIT_KEY"):
        Settings()


def test_secrets_are_read_from_the_files_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "audit").write_text("from-a-file-" + "k" * 32 + "\n")
    (tmp_path / "db").write_text("postgresql+psycopg://app:pw@db/radvigil\n")
    monkeypatch.setenv("RADVIGIL_ENV", "production")
    monkeypatch.setenv("RADVIGIL_AUDIT_KEY_FILE", str(tmp_path / "audit"))
    monkeypatch.setenv("RADVIGIL_DATABASE_URL_FILE", str(tmp_path / "db"))
    settings = Settings()
    assert settings.audit_key == "from-a-file-" + "k" * 32
    assert settings.database_url == "postgresql+psycopg://app:pw@db/radvigil"
    # the variable itself wins over its file
    monkeypatch.setenv("RADVIGIL_AUDIT_KEY", "given-directly-" + "d" * 32)
    assert Settings().audit_key == "given-directly-" + "d" * 32


def test_an_unreadable_secret_file_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RADVIGIL_AUDIT_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="RADVIGIL_AUDIT_KEY_FILE"):
        Settings()
