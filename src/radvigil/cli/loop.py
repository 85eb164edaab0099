"""The closed loop from the command line: review, retrain, trigger checks and rollout."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from radvigil.cli.admin import actor, database
from radvigil.cli.common import CONFIGS, console
from radvigil.cli.context import catalog, registry
from radvigil.config import get_settings
from radvigil.errors import InputError
from radvigil.evaluation import load_criteria, verdict_table_rows
from radvigil.loop.retrain import retrain
from radvigil.loop.rollout import Rollout
from radvigil.loop.shadow import compare
from radvigil.loop.triggers import evaluate_triggers, gather_facts, load_policy
from radvigil.store import AuditLog, FeedbackCreate, FeedbackStore, PredictionStore, ReviewQueue

review_app = typer.Typer(no_args_is_help=True, help="The review queue: list and label cases.")
rollout_app = typer.Typer(no_args_is_help=True, help="Shadow, canary, promote, reject, rollback.")
loop_app = typer.Typer(no_args_is_help=True, help="Retraining triggers.")
GATES = CONFIGS / "gates.yaml"


def _recorder(audit: AuditLog, name: str):
    def record(action: str, who: str, version: str, details: dict) -> None:
        audit.append(
            actor=who,
            action=action,
            object_type="model_version",
            object_id=f"{name}/{version}",
            model_version=f"{name}/{version}",
            details=details,
        )

    return record


@review_app.command("list")
def review_list(site: str | None = typer.Option(None), limit: int = typer.Option(20)) -> None:
    """Cases awaiting a label, most unusual first."""
    settings = get_settings()
    queue = ReviewQueue(database())
    table = Table("request id", "time", "predicted", "confidence", "OOD", "site", "why")
    for r in queue.pending(site=site, max_confidence=settings.review_confidence, limit=limit):
        table.add_row(
            r.id,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            r.predicted_class,
            f"{r.confidence:.2f}",
            "" if r.ood_score is None else f"{r.ood_score:.1f}",
            r.site or "",
            "; ".join(r.warnings)[:80],
        )
    console.print(table)
    console.print(f"{queue.size(site=site, max_confidence=settings.review_confidence)} waiting")


@review_app.command("label")
def review_label(
    prediction_id: str = typer.Argument(...),
    label: str = typer.Argument(...),
    comment: str | None = typer.Option(None),
) -> None:
    """Label a prediction (the reviewer is recorded as cli:<user>)."""
    db = database()
    record = PredictionStore(db).get(prediction_id)
    if label not in record.probabilities:
        raise InputError(
            f"label {label!r} is not a class of task {record.task!r}: {list(record.probabilities)}"
        )
    who = actor()
    stored = FeedbackStore(db).add(
        FeedbackCreate(prediction_id=prediction_id, label=label, comment=comment), reviewer=who
    )
    AuditLog(db).append(
        actor=who,
        action="label",
        object_type="prediction",
        object_id=prediction_id,
        request_id=prediction_id,
        model_version=f"{record.model_name}/{record.model_version}",
        details={"label": label, "feedback_id": stored.id},
    )
    console.print(f"labelled {prediction_id} as {label}")


def retrain_command(
    criteria: Path = typer.Option(GATES, help="Gate criteria YAML."),
    holdout_share: float = typer.Option(
        0.3, min=0.0, max=0.9, help="Share of labelled drifters kept for hold-out."
    ),
) -> None:
    """Retrain on champion data + labelled drifters, gate, and alias challenger if it passes."""
    settings = get_settings()
    db = database()
    reg = registry()
    champion = reg.load(f"{settings.model_name}@champion")
    outcome = retrain(
        champion,
        PredictionStore(db),
        FeedbackStore(db),
        catalog(),
        reg,
        load_criteria(criteria),
        settings.reports_dir,
        _recorder(AuditLog(db), settings.model_name),
        actor(),
        seed=settings.seed,
    )
    table = Table(
        title=f"challenger {settings.model_name}/{outcome.version}: "
        f"{'PASS' if outcome.passed else 'FAIL'}"
    )
    for column in ("result", "gate", "finding", "value", "95% CI", "rule"):
        table.add_column(column)
    for row in verdict_table_rows(outcome.verdict):
        table.add_row(
            row["result"],
            row["gate"],
            row["finding"] or row["subgroup"],
            row["value"],
            row["95% CI"],
            row["rule"],
        )
    console.print(table)
    console.print(
        f"data {outcome.data_version} (+{outcome.feedback_cases} labelled drifters), "
        f"problem cases {outcome.problem_cases_version}; report {outcome.report_path}"
    )
    if not outcome.passed:
        console.print("[red]not aliased as challenger:[/red] " + outcome.verdict.summary())
        raise typer.Exit(1)


@loop_app.command("check")
def loop_check(
    policy: Path | None = typer.Option(None, help="Trigger policy YAML (defaults built in)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would fire and why."),
    criteria: Path = typer.Option(GATES, help="Gate criteria for the retrain."),
) -> None:
    """Evaluate retraining triggers; retrain when one fires (unless --dry-run)."""
    settings = get_settings()
    db = database()
    reg = registry()
    mv = reg.resolve(f"{settings.model_name}@champion")
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
    facts = gather_facts(
        PredictionStore(db),
        FeedbackStore(db),
        str(mv.version),
        created,
        _drift_streaks(db, settings.model_name, str(mv.version)),
    )
    results = evaluate_triggers(load_policy(policy), facts)
    table = Table("trigger", "fires", "why")
    for r in results:
        table.add_row(r.name, "[bold red]yes[/bold red]" if r.fired else "no", r.reason)
    console.print(table)
    if any(r.fired for r in results) and not dry_run:
        AuditLog(db).append(
            actor=actor(),
            action="trigger",
            object_type="model_version",
            object_id=f"{settings.model_name}/{mv.version}",
            details={"fired": [r.name for r in results if r.fired]},
        )
        retrain_command(criteria=criteria, holdout_share=0.3)


def _drift_streaks(db, name: str, version: str) -> dict[str, int]:
    from radvigil.loop.monitoring import drift_streaks

    return drift_streaks(db, name, version)


def _rollout() -> tuple[Rollout, str]:
    settings = get_settings()
    audit = AuditLog(database())
    return Rollout(registry(), settings.model_name, _recorder(audit, settings.model_name)), actor()


REASON = typer.Option(..., "--reason", "-r", help="Why (recorded in the audit log and MLflow).")


@rollout_app.command("status")
def rollout_status() -> None:
    """The rollout state and the shadow comparison so far."""
    rollout, _ = _rollout()
    state = rollout.state()
    console.print(state.model_dump())
    if state.challenger:
        db = database()
        console.print(
            compare(PredictionStore(db), FeedbackStore(db), state.challenger).model_dump(
                exclude={"disagreements"}
            )
        )


@rollout_app.command("shadow")
def rollout_shadow(reason: str = REASON) -> None:
    """The challenger scores every request silently; compare with `rollout status`."""
    rollout, who = _rollout()
    console.print(rollout.shadow(who, reason).model_dump())


@rollout_app.command("canary")
def rollout_canary(
    share: float = typer.Option(0.1, help="Share of studies (0-0.5]."), reason: str = REASON
) -> None:
    """The challenger answers a sticky share of studies."""
    rollout, who = _rollout()
    console.print(rollout.canary(share, who, reason).model_dump())


@rollout_app.command("promote")
def rollout_promote(reason: str = REASON) -> None:
    """Challenger -> champion (needs a passing gate); the old champion becomes `previous`."""
    rollout, who = _rollout()
    console.print(f"promoted version {rollout.promote(who, reason)}")


@rollout_app.command("reject")
def rollout_reject(reason: str = REASON) -> None:
    """Drop the challenger alias; the version stays registered, tagged as rejected."""
    rollout, who = _rollout()
    console.print(f"rejected version {rollout.reject(who, reason)}")


@rollout_app.command("rollback")
def rollout_rollback(reason: str = REASON) -> None:
    """Restore the previous champion in one step (servers follow within the poll interval)."""
    rollout, who = _rollout()
    console.print(f"champion is version {rollout.rollback(who, reason)} again")
