"""Governance: gated alias moves from the CLI (audited with the OS user), a keyed audit chain
that outsiders cannot recompute, labels covered by it, and ``audit verify`` without tracebacks."""

from __future__ import annotations

import getpass
import json

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from radvigil.cli import admin, loop, models
from radvigil.cli.common import ErrorHandlingGroup
from radvigil.config import Settings
from radvigil.errors import ForbiddenError
from radvigil.registry import Registry, Tag
from radvigil.store import AuditLog, Database, FeedbackCreate, FeedbackStore, upgrade_database
from radvigil.store.audit import record_hash
from tests.helpers import mlflow_client, mlflow_store

app = typer.Typer(cls=ErrorHandlingGroup)
app.add_typer(admin.audit_app, name="audit")
app.add_typer(models.app, name="models")
app.add_typer(loop.rollout_app, name="rollout")
runner = CliRunner()
NAME = "chest-pneumonia"


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result.stdout, result.stderr


@pytest.fixture()
def registered(home: Settings) -> tuple[Registry, Database]:
    """Three registered versions (no training needed): 1 passed its gate, 2 failed, 3 none."""
    db = Database.from_settings(home)
    upgrade_database(db)
    mlflow_store(home.home_dir / "mlflow.db")  # where the CLI under test finds the store
    registry = Registry(home.resolved_tracking_uri, home.artifacts_dir, home.home_dir / "cache")
    mlflow = mlflow_client(registry)
    mlflow.create_registered_model(NAME)
    for verdict in (True, False, None):
        mv = mlflow.create_model_version(NAME, source=str(home.home_dir))
        if verdict is not None:
            tag = json.dumps({"passed": verdict})
            registry.set_version_tag(NAME, str(mv.version), Tag.GATE, tag)
    return registry, db


def test_champion_needs_a_passing_gate_or_force_with_a_reason(registered) -> None:
    registry, db = registered
    _, err = run("models", "alias", NAME, "champion", "2", code=2)
    assert "(forbidden)" in err and "failed gate verdict" in err
    run("models", "alias", NAME, "champion", "3", code=2)  # no verdict at all
    _, err = run("models", "alias", NAME, "champion", "2", "--force", code=2)
    assert "needs a reason" in err
    assert "champion" not in registry.aliases(NAME)
    run("models", "alias", NAME, "champion", "1")
    run("models", "alias", NAME, "champion", "2", "--force", "--reason", "incident 42 hotfix")
    events = AuditLog(db).list(action="alias.set", newest_first=False)
    assert [e.actor for e in events] == [f"cli:{getpass.getuser()}"] * 2
    assert [(e.details["gate"], e.details["forced"]) for e in events] == [
        ("passed", False),
        ("failed", True),
    ]
    assert events[1].details["reason"] == "incident 42 hotfix"


def test_rollout_of_a_failed_challenger_needs_force_with_a_reason(registered) -> None:
    registry, db = registered
    registry.set_alias(NAME, "champion", "1", "test", "first")
    registry.set_alias(NAME, "challenger", "2", "test", "forced in for the test")
    _, err = run("rollout", "shadow", "--reason", "try it", code=2)
    assert "failed gate verdict" in err
    run("rollout", "shadow", "--force", "--reason", "incident 43: shadow only, no patient sees it")
    _, err = run("rollout", "promote", "--reason", "go", code=2)
    assert "failed gate verdict" in err
    assert registry.aliases(NAME)["champion"] == "1"
    events = AuditLog(db).list(action="rollout_shadow", newest_first=False)
    assert [(e.details["gate"], e.details["forced"], e.actor) for e in events] == [
        ("failed", True, f"cli:{getpass.getuser()}")
    ]


def test_rollout_moves_by_name_as_the_api_and_the_dashboard_ask(registered) -> None:
    from radvigil.loop.rollout import Rollout

    registry, _ = registered
    registry.set_alias(NAME, "champion", "1", "test", "first")
    registry.set_alias(NAME, "challenger", "3", "test", "no verdict yet")
    recorded: list[str] = []
    rollout = Rollout(registry, NAME, lambda action, *_: recorded.append(action))
    with pytest.raises(ForbiddenError, match="no gate verdict"):
        rollout.move("canary", "alice", "try it")
    assert rollout.move("canary", "alice", "try it, forced", force=True) == "3"
    assert (rollout.state().mode, rollout.state().canary_share) == ("canary", 0.1)
    assert rollout.move("reject", "alice", "worse on site B") == "3"
    assert "challenger" not in registry.aliases(NAME) and rollout.state().mode == "off"
    assert recorded == ["rollout_canary", "reject"]


def test_rewritten_chain_without_the_key_is_caught_without_head(home: Settings) -> None:
    db = Database.from_settings(home)
    upgrade_database(db)
    log = AuditLog(db)
    for i in range(4):
        log.append(actor="a", action="x", object_type="t", object_id=str(i))
    # an attacker with database access rewrites record 2 and recomputes every later hash
    rows = [e.model_dump() for e in log.list(newest_first=False)]
    rows[1]["actor"] = "mallory"
    prev = rows[0]["hash"]
    with db.engine.begin() as conn:
        for row in rows[1:]:
            row["prev_hash"] = prev
            row["hash"] = prev = record_hash(row, "a guessed secret")
            conn.execute(
                text("UPDATE audit_events SET actor=:a, hash=:h, prev_hash=:p WHERE id=:i"),
                {"a": row["actor"], "h": row["hash"], "p": row["prev_hash"], "i": row["id"]},
            )
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 2)


def test_edited_feedback_label_breaks_verification(home: Settings) -> None:
    db = Database.from_settings(home)
    upgrade_database(db)
    log = AuditLog(db)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO predictions (id, created_at, model_name, model_version, task, "
                "probabilities, predicted_class, findings, confidence, warnings, latency_ms, "
                "routed_to_review, served_by, image_stats) VALUES ('p1', "
                "'2026-01-01 00:00:00', 'm', '1', 't', '{}', 'normal', '[]', 0.9, "
                "'[]', 1.0, 0, 'champion', '{}')"
            )
        )
    stored = FeedbackStore(db).add(FeedbackCreate(prediction_id="p1", label="normal"), reviewer="r")
    log.append(
        actor="r",
        action="label",
        object_type="prediction",
        object_id="p1",
        details={"label": "normal", "feedback_id": stored.id},
    )
    assert log.verify().ok
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE feedback SET label = 'pneumonia'"))
    result = log.verify()
    assert not result.ok and "label was edited" in (result.reason or "")


def test_audit_verify_reports_malformed_rows_without_a_traceback(home: Settings) -> None:
    db = Database.from_settings(home)
    upgrade_database(db)
    AuditLog(db).append(actor="a", action="x", object_type="t")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET created_at = 'not a date'"))
    _, err = run("audit", "verify", code=1)
    assert "audit chain broken" in err and "Traceback" not in err


def test_promotion_and_rollback_file_a_change_control_record(home: Settings) -> None:
    import hashlib

    from radvigil.loop.rollout import Rollout

    mlflow_store(home.home_dir / "mlflow.db")  # where the CLI under test finds the store
    registry = Registry(home.resolved_tracking_uri, home.artifacts_dir, home.home_dir / "cache")
    experiment = registry.experiment_id("chest-pneumonia")
    mlflow = mlflow_client(registry)
    mlflow.create_registered_model(NAME)
    for lr in ("0.001", "0.003"):
        run = mlflow.create_run(experiment)
        mlflow.log_param(run.info.run_id, "lr", lr)
        mv = mlflow.create_model_version(NAME, source=str(home.home_dir), run_id=run.info.run_id)
        registry.set_version_tag(NAME, str(mv.version), Tag.GATE, '{"passed": true}')
    registry.set_alias(NAME, "champion", "1", "test", "first")
    registry.set_alias(NAME, "challenger", "2", "test", "retrained")
    recorded: list[tuple[str, dict]] = []
    rollout = Rollout(
        registry,
        NAME,
        lambda action, actor, version, details: recorded.append((action, details)),
        changes_dir=home.home_dir / "changes",
        evidence=lambda version: {"shadow": {"agreement": 0.97, "pairs": 120}},
    )
    rollout.promote("alice", "better calibrated")
    assert recorded[-1][0] == "promote"
    details = recorded[-1][1]
    path = home.home_dir / "changes" / details["change_record"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == details["change_record_sha256"]
    record = json.loads(path.read_text())
    assert (record["from_version"], record["to_version"], record["approved_by"]) == (
        "1",
        "2",
        "alice",
    )
    assert record["config_diff"] == {"lr": ["0.001", "0.003"]}
    assert record["verification"]["gate"] == {"passed": True}
    assert record["verification"]["shadow"]["agreement"] == 0.97
    assert "rollback" in record["rollback_plan"] and path.with_suffix(".html").exists()
    run_id = registry.resolve(f"{NAME}/2").run_id
    logged = registry.artifacts(run_id, "change_control")
    assert f"change_control/{details['change_record']}" in logged
    rollout.rollback("bob", "alert on site B")
    assert recorded[-1][0] == "rollback" and "change_record_sha256" in recorded[-1][1]
