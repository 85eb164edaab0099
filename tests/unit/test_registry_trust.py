"""Registry trust: signed gate records, radvigil's deployment state, conflicts with MLflow.

Real SQLite metadata database and a real MLflow registry (local SQLite store); the model
"files" are small byte files, since signing and checking only hash them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from click.testing import Result
from pydantic import ValidationError
from sqlalchemy import update

from radvigil.config import Settings, get_settings, reset_settings
from radvigil.errors import ForbiddenError, InputError, NotFoundError, RegistryError
from radvigil.loop.deployment import CONFLICT_RULE, Deployments
from radvigil.loop.gate_records import decision_sha256, key_id, sign_gate, verify_gate
from radvigil.loop.governance import move_alias
from radvigil.loop.rollout import Rollout, RolloutState, read_state
from radvigil.registry import AliasEvent, Registry, Tag, VersionInfo
from radvigil.store import AlertStore, AuditLog, Database, upgrade_database
from radvigil.store.tables import GateRecordRow
from tests.helpers import mlflow_client, mlflow_store, small_card

KEY = "unit-test-audit-key"
NAME = "trust-model"


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    return database


@pytest.fixture()
def audit(db: Database) -> AuditLog:
    return AuditLog(db, secret=KEY)


@pytest.fixture()
def graph(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"an onnx graph, as far as hashing goes" * 100)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """One real MLflow registry (local SQLite store) for the module: creating one is slow."""
    root = tmp_path_factory.mktemp("mlflow")
    return Registry(mlflow_store(root / "mlflow.db"), root / "art", root / "cache")


@pytest.fixture()
def registry(store: Registry) -> Iterator[Registry]:
    """The module's registry with a fresh NAME of three versions (no artifacts needed)."""
    mlflow = mlflow_client(store)
    mlflow.create_registered_model(NAME)
    run = mlflow.create_run(store.experiment_id("trust"))
    for _ in range(3):
        mlflow.create_model_version(NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    yield store
    mlflow.delete_registered_model(NAME)


def _sign(db: Database, audit: AuditLog, graph: Path, version: str = "1", verdict="passed"):
    return sign_gate(
        db,
        audit,
        name=NAME,
        version=version,
        onnx_path=graph,
        verdict=verdict,
        criteria="c" * 64,
        actor="tester",
    )


def _check(db: Database, graph: Path, secret: str = KEY, version: str = "1"):
    return verify_gate(db, secret, name=NAME, version=version, onnx_path=graph)


def test_the_registry_hands_out_its_own_types_and_maps_mlflow_errors_by_code(registry) -> None:
    mv = registry.resolve(f"{NAME}/2")
    assert isinstance(mv, VersionInfo) and (mv.name, mv.version) == (NAME, "2")
    assert mv.created.tzinfo is not None and mv.run_id
    with pytest.raises(NotFoundError, match=f"no model version {NAME}@champion"):
        registry.resolve(f"{NAME}@champion")
    with pytest.raises(NotFoundError, match=f"no model version {NAME}/9"):
        registry.resolve(f"{NAME}/9")
    with pytest.raises(NotFoundError, match="no registered model 'ghost'"):
        registry.aliases("ghost")
    with pytest.raises(RegistryError, match=f"cannot tag {NAME}/x"):
        registry.set_version_tag(NAME, "x", Tag.GATE, "{}")
    registry.set_alias(NAME, "champion", "2", "tester", "first")
    [event] = registry.alias_history(NAME)
    assert isinstance(event, AliasEvent)
    assert (event.alias, event.version, event.previous, event.actor) == (
        "champion",
        "2",
        None,
        "tester",
    )


def test_signed_gate_verifies_and_is_audited(db, audit, graph) -> None:
    record = _sign(db, audit, graph)
    assert record.key_id == key_id(KEY) and len(record.signature) == 64
    check = _check(db, graph)
    assert check.ok, check.reason
    [event] = audit.list(action="gate.signed")
    assert event.details["sha256"] == record.sha256 and event.details["verdict"] == "passed"


def test_missing_record_failed_verdict_and_other_key_are_refused(db, audit, graph) -> None:
    assert not _check(db, graph).ok
    assert "no signed gate record" in _check(db, graph).reason
    _sign(db, audit, graph, verdict="failed")
    assert "verdict is failed" in _check(db, graph).reason
    _sign(db, audit, graph)
    assert _check(db, graph).ok
    assert "signed with key" in _check(db, graph, secret="another-key").reason


def test_a_verdict_edited_in_the_database_breaks_the_signature(db, audit, graph) -> None:
    _sign(db, audit, graph, verdict="failed")
    with db.transaction("tamper") as conn:
        conn.execute(update(GateRecordRow).values(verdict="passed"))
    check = _check(db, graph)
    assert not check.ok and "invalid signature" in check.reason


def test_thresholds_edited_after_gating_are_refused(db, audit, graph) -> None:
    """The thresholds live in the card, not the graph: the record signs their digest, so a site
    threshold slipped into the artifact store after gating stops the version serving."""
    gated = decision_sha256(small_card())
    record = sign_gate(
        db,
        audit,
        name=NAME,
        version="1",
        onnx_path=graph,
        verdict="passed",
        criteria="c" * 64,
        actor="tester",
        decision=gated,
    )
    assert record.decision_sha256 == gated
    assert verify_gate(db, KEY, name=NAME, version="1", onnx_path=graph, decision=gated).ok
    edited = decision_sha256(small_card(site_thresholds={"north": {"pneumonia": 0.9}}))
    assert edited != gated
    check = verify_gate(db, KEY, name=NAME, version="1", onnx_path=graph, decision=edited)
    assert not check.ok and "operating thresholds changed after gating" in check.reason
    with db.transaction("tamper") as conn:  # dropping the digest breaks the signature instead
        conn.execute(update(GateRecordRow).values(decision_sha256=None))
    check = verify_gate(db, KEY, name=NAME, version="1", onnx_path=graph, decision=edited)
    assert not check.ok and "invalid signature" in check.reason


def test_a_record_signed_before_the_decision_digest_still_verifies(db, audit, graph) -> None:
    record = _sign(db, audit, graph)  # what every record before migration 0018 looks like
    assert record.decision_sha256 is None
    check = verify_gate(
        db, KEY, name=NAME, version="1", onnx_path=graph, decision=decision_sha256(small_card())
    )
    assert check.ok, check.reason


def test_a_model_file_replaced_after_gating_is_refused(db, audit, graph) -> None:
    _sign(db, audit, graph)
    graph.write_bytes(graph.read_bytes() + b"\x00")
    check = _check(db, graph)
    assert not check.ok and "changed after gating" in check.reason


def _aged(deployments: Deployments) -> Deployments:
    """The same authority with no grace: a difference counts at once (no waiting in a test)."""
    return Deployments(deployments.db, deployments.registry, deployments.audit, timedelta(0))


def test_alias_moves_are_written_here_first_and_mirrored(db, audit, registry) -> None:
    deployments = Deployments(db, registry, audit)
    assert deployments.set_alias(NAME, "champion", "1", actor="tester", reason="first")
    assert not deployments.set_alias(NAME, "champion", "1", actor="tester", reason="again")
    assert deployments.state(NAME).champion == "1"
    assert registry.aliases(NAME) == {"champion": "1"}
    [event] = deployments.store.events(NAME)
    assert event.action == "alias.champion" and event.details["after"]["champion"] == "1"
    assert _aged(deployments).conflicts(NAME, deployments.state(NAME)) == []
    with pytest.raises(InputError, match="unknown alias"):
        deployments.set_alias(NAME, "latest", "2", actor="tester", reason="x")


def test_an_alias_moved_in_mlflow_is_one_conflict_alert_and_audit(db, audit, registry) -> None:
    deployments = _aged(Deployments(db, registry, audit))
    deployments.set_alias(NAME, "champion", "1", actor="tester", reason="first")
    mlflow_client(registry).set_registered_model_alias(NAME, "champion", "2")  # behind our back
    held = deployments.state(NAME)
    problems = deployments.conflicts(NAME, held)
    assert problems == ["@champion is 2 in MLflow, 1 in radvigil"]
    assert deployments.report_conflict(NAME, held, problems)
    assert not deployments.report_conflict(NAME, held, problems)  # the next poll, or replica
    [alert] = AlertStore(db).list(model_name=NAME)
    assert alert.rule == CONFLICT_RULE and alert.severity == "critical"
    assert alert.model_version == "1" and "@champion is 2 in MLflow" in alert.message
    [event] = audit.list(action="registry.conflict")
    assert event.details["serving"] == "1" and event.details["alert_id"] == alert.id
    assert deployments.mirror(NAME, actor="tester", reason="undo") == ["champion"]
    assert registry.aliases(NAME) == {"champion": "1"}
    assert deployments.conflicts(NAME, deployments.state(NAME)) == []


def test_a_canary_share_over_the_cap_in_mlflow_is_a_conflict(db, audit, registry) -> None:
    deployments = _aged(Deployments(db, registry, audit))
    deployments.set_alias(NAME, "champion", "1", actor="tester", reason="first")
    registry.set_model_tag(NAME, Tag.ROLLOUT, '{"mode": "canary", "canary_share": 0.9}')
    [problem] = deployments.conflicts(NAME, deployments.state(NAME))
    assert "canary at share 0.9 (over the 0.5 cap) in MLflow, off at share 0 in radvigil" in (
        problem
    )
    registry.set_model_tag(NAME, Tag.ROLLOUT, "not json")
    assert deployments.conflicts(NAME, deployments.state(NAME)) == [
        "the radvigil.rollout tag in MLflow is unreadable"
    ]


def test_changes_made_just_now_are_not_conflicts_while_being_mirrored(db, audit, registry) -> None:
    deployments = Deployments(db, registry, audit, timedelta(hours=1))
    deployments.set_alias(NAME, "champion", "1", actor="tester", reason="first")
    mlflow_client(registry).set_registered_model_alias(NAME, "champion", "2")
    assert deployments.conflicts(NAME, deployments.state(NAME)) == []


def test_rollout_lives_in_the_database_and_caps_the_canary(db, audit, registry, graph) -> None:
    deployments = Deployments(db, registry, audit)
    for version in ("1", "2"):
        _sign(db, audit, graph, version)
    deployments.set_alias(NAME, "champion", "1", actor="tester", reason="first")
    recorded = []
    rollout = Rollout(registry, NAME, lambda *args: recorded.append(args), deployments=deployments)
    rollout.propose("2", "tester", "a better one")
    state = rollout.canary(0.5, "tester", "try it")
    assert (state.mode, state.canary_share, state.challenger) == ("canary", 0.5, "2")
    assert read_state(registry, NAME).canary_share == 0.5  # the mirrored tag
    with pytest.raises(InputError, match=r"\(0, 0.5\]"):
        rollout.canary(0.6, "tester", "more")
    assert rollout.promote("tester", "good") == "2"
    held = deployments.state(NAME)
    assert (held.champion, held.previous, held.challenger, held.mode) == ("2", "1", None, "off")
    assert registry.aliases(NAME) == {"champion": "2", "previous": "1"}
    assert [r[0] for r in recorded] == ["propose", "rollout_canary", "promote"]


def test_governance_reads_the_signed_record_not_the_mlflow_tag(db, audit, registry) -> None:
    deployments = Deployments(db, registry, audit)
    registry.set_version_tag(NAME, "3", Tag.GATE, '{"passed": true, "failed": []}')
    with pytest.raises(ForbiddenError, match="no gate verdict"):
        move_alias(
            registry,
            NAME,
            "champion",
            "3",
            actor="tester",
            reason=None,
            record=lambda *a: None,
            deployments=deployments,
        )
    assert deployments.state(NAME).champion is None


def test_canary_share_is_capped_in_every_shape_of_the_state(registry) -> None:
    with pytest.raises(ValidationError):
        RolloutState(mode="canary", canary_share=0.9)
    registry.set_model_tag(NAME, Tag.ROLLOUT, '{"mode": "canary", "canary_share": 0.9}')
    with pytest.raises(RegistryError, match="tag of trust-model is invalid"):
        read_state(registry, NAME)


def test_registry_trust_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RADVIGIL_REGISTRY_TRUST")  # the test suite's legacy default
    assert Settings().registry_trust == "enforce"


def test_cli_moves_aliases_through_the_database_and_restores_mlflow(
    home: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``radvigil models alias`` needs a signed passing gate and writes radvigil's state;
    ``radvigil models sync-registry`` undoes an alias moved in MLflow."""
    from typer.testing import CliRunner

    from radvigil.cli import admin, context, models
    from radvigil.cli.common import ErrorHandlingGroup

    monkeypatch.setenv("RADVIGIL_REGISTRY_TRUST", "enforce")
    reset_settings()
    mlflow_store(home.home_dir / "mlflow.db")  # the store context.registry() opens
    cli = typer.Typer(cls=ErrorHandlingGroup)
    cli.add_typer(models.app, name="models")
    cli.add_typer(admin.db_app, name="db")
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), env={"COLUMNS": "200"})

    assert run("db", "upgrade").exit_code == 0
    reg = context.registry()
    mlflow = mlflow_client(reg)
    mlflow.create_registered_model(NAME)
    run_info = mlflow.create_run(reg.experiment_id("trust")).info
    for _ in range(2):
        mlflow.create_model_version(NAME, f"{run_info.artifact_uri}/model", run_id=run_info.run_id)
    db = admin.database()
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"graph")
    _sign(db, AuditLog(db, secret=get_settings().audit_key), graph)

    moved = run("models", "alias", NAME, "champion", "1", "--reason", "first")
    assert moved.exit_code == 0, (moved.stdout, moved.stderr)
    assert Deployments(db, reg, AuditLog(db)).state(NAME).champion == "1"
    refused = run("models", "alias", NAME, "champion", "2", "--reason", "ungated")
    assert refused.exit_code != 0 and "no gate verdict" in refused.stderr

    mlflow.set_registered_model_alias(NAME, "champion", "2")  # straight into MLflow
    synced = run("models", "sync-registry", NAME, "--reason", "undo")
    assert synced.exit_code == 0 and "restored champion" in synced.stdout
    assert reg.aliases(NAME) == {"champion": "1"}
    [event] = AuditLog(db).list(action="registry.sync")
    assert event.details["restored"] == ["champion"]
