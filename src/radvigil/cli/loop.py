"""The closed loop from the command line: review, retrain, trigger checks and rollout."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from radvigil.cli.admin import actor, database, deployments
from radvigil.cli.common import CONFIGS, console
from radvigil.cli.context import catalog, registry
from radvigil.cli.demo_output import gated_tables
from radvigil.config import get_settings
from radvigil.evaluation import load_criteria
from radvigil.loop.actions import label_case, version_recorder
from radvigil.loop.onboarding import (
    label_policy,
    offer,
    registry_thresholds,
    site_onboarding,
)
from radvigil.loop.retrain import retrain, site_calibrate
from radvigil.loop.rollout import Rollout
from radvigil.loop.shadow import compare
from radvigil.loop.triggers import check_triggers, load_policy
from radvigil.loop.workspace import Workspace
from radvigil.store import AuditLog, FeedbackStore, PredictionRecord, PredictionStore, ReviewQueue

review_app = typer.Typer(no_args_is_help=True, help="The review queue: list and label cases.")
rollout_app = typer.Typer(no_args_is_help=True, help="Shadow, canary, promote, reject, rollback.")
loop_app = typer.Typer(no_args_is_help=True, help="Retraining triggers.")
GATES = CONFIGS / "gates.yaml"


@review_app.command("list")
def review_list(site: str | None = typer.Option(None), limit: int = typer.Option(20)) -> None:
    """Cases awaiting a label: a budgeted site's by its selection policy, else most unusual
    first."""
    settings = get_settings()
    queue = ReviewQueue(database())
    table = Table("request id", "time", "predicted", "confidence", "OOD", "site", "why")
    onboarding = None
    if site is not None:
        onboarding = site_onboarding(queue, settings, site, registry_thresholds(registry()))
    if onboarding is not None:
        offer(queue, onboarding, onboarding.entries[:limit])
        for entry in onboarding.entries[:limit]:
            table.add_row(
                *_queue_row(entry.record, f"{entry.choice.policy}: {entry.choice.reason}")
            )
        console.print(table)
        console.print(
            f"{len(onboarding.entries)} offered; budget {onboarding.budget} "
            f"({onboarding.period}), {onboarding.spent} spent "
            f"({onboarding.audit_spent} audit), {onboarding.remaining} left"
        )
        return
    for r in queue.pending(site=site, max_confidence=settings.review_confidence, limit=limit):
        table.add_row(*_queue_row(r, "; ".join(r.warnings)))
    console.print(table)
    console.print(f"{queue.size(site=site, max_confidence=settings.review_confidence)} waiting")


def _queue_row(r: PredictionRecord, why: str) -> tuple[str, ...]:
    """One review-queue line: the case and why it is offered (cut to 80 characters)."""
    ood = "" if r.ood_score is None else f"{r.ood_score:.1f}"
    return (
        r.id,
        f"{r.created_at:%Y-%m-%d %H:%M}",
        r.predicted_class,
        f"{r.confidence:.2f}",
        ood,
        r.site or "",
        why[:80],
    )


@review_app.command("label")
def review_label(
    prediction_id: str = typer.Argument(...),
    label: str = typer.Argument(...),
    comment: str | None = typer.Option(None),
) -> None:
    """Label a prediction (the reviewer is recorded as cli:<user>)."""
    db, settings = database(), get_settings()
    label_case(
        PredictionStore(db),
        FeedbackStore(db),
        AuditLog(db),
        prediction_id,
        label,
        actor(),
        comment,
        policy_of=label_policy(ReviewQueue(db), settings, registry_thresholds(registry()))
        if settings.label_budgets
        else None,
    )
    console.print(f"labelled {prediction_id} as {label}")


def retrain_command(
    criteria: Path = typer.Option(GATES, help="Gate criteria YAML."),
    holdout_share: float = typer.Option(
        0.3, min=0.0, max=0.9, help="Share of labelled drifters kept for hold-out."
    ),
    calibration_share: float = typer.Option(
        0.2, min=0.0, max=0.9, help="Share of labelled drifters that joins calibration."
    ),
    local_weight: int = typer.Option(
        4, min=1, help="Times each labelled local case is seen per epoch (retraining only)."
    ),
    warm_start_epochs: int | None = typer.Option(
        None,
        min=1,
        help="Continue from the champion's weights for N epochs (its learning rate, all "
        "layers) instead of training again from the config's starting weights.",
    ),
    calibration_only: bool = typer.Option(
        False,
        "--calibration-only",
        help="Site calibration: refit temperature and thresholds on the labelled local cases, "
        "keep the champion's weights (no retraining).",
    ),
    site: str | None = typer.Option(
        None,
        help="With --calibration-only: also fit this site's own operating thresholds on its "
        "labelled cases outside the hold-out; the new version flags that site's studies at them.",
    ),
    site_sensitivity: float | None = typer.Option(
        None,
        min=0.5,
        max=1.0,
        help="Sensitivity the site's thresholds aim at (default: the task's target).",
    ),
) -> None:
    """Retrain on champion data + labelled drifters, gate, and alias challenger if it passes."""
    if site is not None and not calibration_only:
        raise typer.BadParameter("--site fits a site's thresholds: use it with --calibration-only")
    settings = get_settings()
    db = database()
    reg = registry()
    authority = deployments(reg)
    held = authority.state(settings.model_name).champion if authority else None
    champion = reg.load(
        f"{settings.model_name}/{held}" if held else f"{settings.model_name}@champion"
    )
    ws = Workspace(
        catalog(),
        reg,
        PredictionStore(db),
        FeedbackStore(db),
        load_criteria(criteria),
        settings.reports_dir,
        version_recorder(AuditLog(db), settings.model_name),
        actor(),
        deployments=authority,
    )
    if calibration_only:
        outcome = site_calibrate(
            champion,
            ws,
            holdout_share=holdout_share,
            calibration_share=calibration_share,
            seed=settings.seed,
            site=site,
            target_sensitivity=site_sensitivity,
        )
    else:
        outcome = retrain(
            champion,
            ws,
            holdout_share=holdout_share,
            calibration_share=calibration_share,
            seed=settings.seed,
            local_weight=local_weight,
            warm_start_epochs=warm_start_epochs,
        )
    gated_tables(
        outcome.verdict,
        f"challenger {settings.model_name}/{outcome.version} "
        f"({'PASS' if outcome.passed else 'FAIL'})",
    )
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
    record = None if dry_run else version_recorder(AuditLog(db), settings.model_name)
    check = check_triggers(
        db, registry(), settings.model_name, load_policy(policy), record=record, actor=actor()
    )
    table = Table("trigger", "fires", "why")
    for r in check.results:
        table.add_row(r.name, "[bold red]yes[/bold red]" if r.fired else "no", r.reason)
    console.print(table)
    if check.fired and check.action == "site_calibration":
        console.print(
            f"{settings.model_name}@champion is an imported model: radvigil cannot retrain it; "
            "proposing site calibration (temperature and thresholds refitted on local labels) "
            "instead, or import the vendor's next version"
        )
    if check.fired and not dry_run:
        retrain_command(
            criteria=criteria,
            holdout_share=0.3,
            calibration_share=0.2,
            local_weight=4,
            warm_start_epochs=None,
            calibration_only=check.action == "site_calibration",
        )


def _rollout() -> tuple[Rollout, str]:
    settings = get_settings()
    audit = AuditLog(database())
    reg = registry()
    rollout = Rollout(
        reg,
        settings.model_name,
        version_recorder(audit, settings.model_name),
        changes_dir=settings.reports_dir / "changes",
        deployments=deployments(reg),
    )
    return rollout, actor()


REASON = typer.Option(..., "--reason", "-r", help="Why (recorded in the audit log and MLflow).")
FORCE = typer.Option(
    False,
    "--force",
    help="Go ahead although the challenger has no passing gate (audited as forced, with --reason).",
)


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
def rollout_shadow(reason: str = REASON, force: bool = FORCE) -> None:
    """The challenger scores every request silently; compare with `rollout status`."""
    rollout, who = _rollout()
    console.print(rollout.shadow(who, reason, force=force).model_dump())


@rollout_app.command("canary")
def rollout_canary(
    share: float = typer.Option(0.1, help="Share of studies (0-0.5]."),
    reason: str = REASON,
    force: bool = FORCE,
) -> None:
    """The challenger answers a sticky share of studies."""
    rollout, who = _rollout()
    console.print(rollout.canary(share, who, reason, force=force).model_dump())


@rollout_app.command("promote")
def rollout_promote(reason: str = REASON, force: bool = FORCE) -> None:
    """Challenger -> champion (needs a passing gate, or --force); the old one becomes `previous`."""
    rollout, who = _rollout()
    console.print(f"promoted version {rollout.promote(who, reason, force=force)}")


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
