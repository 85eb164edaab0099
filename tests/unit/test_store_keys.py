"""API keys and roles on SQLite: tokens shown once and stored hashed, revocation, the matrix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from radvigil.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from radvigil.store import ROLE_MATRIX, Database, KeyStore, allowed, require, upgrade_database


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


def test_create_then_authenticate(db: Database) -> None:
    keys = KeyStore(db)
    token, key = keys.create("reading-room-1", "clinician", rate_limit=30)
    assert token.startswith(f"rvk_{key.prefix}_") and len(token) > 50
    assert key.role == "clinician" and key.rate_limit == 30 and key.active
    assert keys.authenticate(token) == key


def test_tokens_are_never_stored(db: Database) -> None:
    token, _ = KeyStore(db).create("pacs", "service")
    with db.engine.connect() as conn:
        dumped = " ".join(str(row) for row in conn.execute(text("SELECT * FROM api_keys")))
    assert token not in dumped
    assert token.rsplit("_", 1)[-1] not in dumped


@pytest.mark.parametrize(
    "bad",
    ["", "rvk", "rvk__", "bearer abc", "rvk_000000000000_guess"],
)
def test_wrong_tokens_do_not_authenticate(db: Database, bad: str) -> None:
    token, _ = KeyStore(db).create("a", "admin")
    assert KeyStore(db).authenticate(bad) is None
    assert KeyStore(db).authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_revoked_keys_stop_working(db: Database) -> None:
    keys = KeyStore(db)
    token, _ = keys.create("temp", "auditor")
    revoked = keys.revoke("temp")
    assert revoked.revoked_at is not None and not revoked.active
    assert keys.authenticate(token) is None
    assert keys.revoke("temp").revoked_at == revoked.revoked_at  # the first time is kept
    assert [k.name for k in keys.list(include_revoked=False)] == []
    assert [k.name for k in keys.list()] == ["temp"]


def test_names_are_unique_even_after_revocation(db: Database) -> None:
    keys = KeyStore(db)
    keys.create("dup", "admin")
    keys.revoke("dup")
    with pytest.raises(ConflictError, match="named 'dup' already exists"):
        keys.create("dup", "admin")


def test_invalid_input_is_refused(db: Database) -> None:
    keys = KeyStore(db)
    with pytest.raises(InputError, match="roles: clinician, admin, auditor, service, metrics"):
        keys.create("x", "root")
    with pytest.raises(InputError, match="1 to 100 characters"):
        keys.create("  ", "admin")
    with pytest.raises(InputError, match="positive"):
        keys.create("x", "admin", rate_limit=0)
    with pytest.raises(NotFoundError, match="no API key named 'ghost'"):
        keys.revoke("ghost")


def test_a_metrics_key_is_stored_and_authenticates(db: Database) -> None:
    """The migrated schema accepts role metrics (the check constraint of revision 0030)."""
    keys = KeyStore(db)
    token, key = keys.create("prometheus", "metrics")
    assert key.role == "metrics" and keys.authenticate(token).role == "metrics"


def test_role_matrix() -> None:
    assert allowed("admin", "manage_keys")
    assert allowed("clinician", "label") and not allowed("clinician", "read_audit")
    assert allowed("auditor", "read_audit") and not allowed("auditor", "predict")
    assert allowed("service", "predict") and not allowed("service", "label")
    assert ROLE_MATRIX["metrics"] == {"read_metrics"}
    assert all(allowed(role, "read_metrics") for role in ROLE_MATRIX)
    assert all(not allowed(role, "manage_keys") for role in ROLE_MATRIX if role != "admin")
    require("clinician", "predict")
    with pytest.raises(ForbiddenError, match="role 'service' may not manage models"):
        require("service", "manage_models")
    with pytest.raises(InputError, match="unknown action 'delete'; valid actions: predict"):
        require("admin", "delete")
