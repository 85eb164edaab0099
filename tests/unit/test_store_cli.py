"""``radvigil db|keys|audit`` against a SQLite home: the commands, their output and exit codes."""

from __future__ import annotations

import sqlite3

import pytest
import typer
from typer.testing import CliRunner

from radvigil.cli import admin
from radvigil.cli.common import ErrorHandlingGroup
from radvigil.config import Settings
from radvigil.store import AuditLog, Database, KeyStore
from radvigil.store.migrate import head_revision

app = typer.Typer(cls=ErrorHandlingGroup)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(admin.audit_app, name="audit")
runner = CliRunner()


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result.stdout, result.stderr


def test_commands_refuse_an_unmigrated_database(home: Settings) -> None:
    _, err = run("keys", "list", code=2)
    assert "(store_error)" in err and "run `radvigil db upgrade`" in " ".join(err.split())


def test_upgrade_status_and_key_lifecycle(home: Settings) -> None:
    out, _ = run("db", "upgrade")
    assert f"schema at revision {head_revision()}" in out
    out, _ = run("db", "status")
    assert "reachable" in out and "up to date" in out

    out, err = run("keys", "create", "--name", "ward-7", "--role", "clinician")
    token = out.strip()
    assert token.startswith("rvk_") and "will not be shown again" in err
    db = Database.from_settings(home)
    assert KeyStore(db).authenticate(token) is not None

    out, _ = run("keys", "list")
    assert "ward-7" in out and "clinician" in out and token not in out
    out, _ = run("keys", "revoke", "ward-7")
    assert "revoked key ward-7" in out
    assert KeyStore(db).authenticate(token) is None
    out, _ = run("keys", "list", "--active")
    assert "ward-7" not in out

    _, err = run("keys", "create", "--name", "x", "--role", "root", code=2)
    assert "(invalid_input)" in err and "valid roles" in err
    _, err = run("keys", "revoke", "nobody", code=2)
    assert "(not_found)" in err

    actions = [e.action for e in AuditLog(db).list(newest_first=False)]
    assert actions == ["db.upgrade", "key.create", "key.revoke"]


def test_audit_verify_and_list(home: Settings) -> None:
    run("db", "upgrade")
    run("keys", "create", "--name", "a", "--role", "admin")
    out, _ = run("audit", "verify")
    assert "audit chain intact: 2 records" in out
    out, _ = run("audit", "list", "--limit", "1")
    assert "key.create" in out and "db.upgrade" not in out

    with sqlite3.connect(home.home_dir / "radvigil.db") as conn:
        conn.execute("UPDATE audit_events SET details = '{}' WHERE id = 2")
    _, err = run("audit", "verify", code=1)
    assert "audit chain broken at record 2" in err and "edited" in err


def test_audit_verify_walks_from_the_checkpoint_unless_full(home: Settings) -> None:
    run("db", "upgrade")
    run("keys", "create", "--name", "a", "--role", "admin")
    run("audit", "verify")  # leaves a signed checkpoint at record 2
    run("keys", "create", "--name", "b", "--role", "auditor")
    out, _ = run("audit", "verify")
    assert "audit chain intact: 1 records after checkpoint 2" in out
    with sqlite3.connect(home.home_dir / "radvigil.db") as conn:
        conn.execute("UPDATE audit_events SET details = '{}' WHERE id = 1")
    run("audit", "verify")  # history before the checkpoint is for --full
    _, err = run("audit", "verify", "--full", code=1)
    assert "audit chain broken at record 1" in err


@pytest.mark.parametrize("group", ["db", "keys", "audit"])
def test_groups_show_help(group: str) -> None:
    out, _ = run(group, "--help")
    assert "Usage" in out
