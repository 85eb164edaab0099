"""Issue 30's settings findings: weak production audit keys refused, secrets read from files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from radvigil.config import DEV_AUDIT_KEY, Settings, audit_key_id

STRONG = "k" * 40


@pytest.mark.parametrize("key", ["", "   ", "short-secret", DEV_AUDIT_KEY])
def test_production_refuses_an_empty_weak_or_default_audit_key(key: str) -> None:
    with pytest.raises(ValidationError, match="RADVIGIL_AUDIT_KEY"):
        Settings(env="production", audit_key=key)
    assert Settings(audit_key=key).audit_key == key  # development accepts anything


def test_audit_key_is_read_from_a_mounted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "audit_key"
    secret.write_text(STRONG + "\n")
    monkeypatch.setenv("RADVIGIL_AUDIT_KEY_FILE", str(secret))
    monkeypatch.setenv("RADVIGIL_DATABASE_URL_FILE", str(secret))
    settings = Settings(env="production")
    assert settings.audit_key == STRONG and settings.database_url == STRONG
    assert settings.audit_key_id == audit_key_id(STRONG) != audit_key_id(DEV_AUDIT_KEY)


def test_an_unreadable_secret_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADVIGIL_AUDIT_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match=r"RADVIGIL_AUDIT_KEY_FILE=.*cannot be read"):
        Settings(env="production")


def test_retired_audit_keys_come_from_a_json_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old"
    old.write_text('{"abc": "old-secret"}')
    monkeypatch.setenv("RADVIGIL_AUDIT_KEYS_OLD_FILE", str(old))
    settings = Settings(audit_key=STRONG)
    assert settings.audit_keys == {"abc": "old-secret", audit_key_id(STRONG): STRONG}
