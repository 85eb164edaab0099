"""``radvigil models``: list versions, show lineage, set aliases, import outside ONNX models."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table
from rich.tree import Tree

from radvigil.cli.admin import actor, cli_recorder, deployments
from radvigil.cli.common import CONFIGS, console
from radvigil.cli.context import catalog, registry
from radvigil.config import get_settings
from radvigil.errors import ConfigError
from radvigil.loop.governance import move_alias
from radvigil.registry import ModelRef, Tag

app = typer.Typer(no_args_is_help=True, help="Registered model versions, aliases and lineage.")


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


@app.command("list")
def list_(name: str | None = typer.Argument(None, help="Registered model name.")) -> None:
    """Every model version with its aliases, data version and gate verdict."""
    reg = registry()
    aliases: dict[tuple[str, str], list[str]] = {}
    for model in reg.registered_models():
        for alias, version in model.aliases.items():
            aliases.setdefault((model.name, version), []).append(alias)
    table = Table("name", "version", "aliases", "created", "data version", "gate")
    for mv in reg.versions(name):
        table.add_row(
            mv.name,
            mv.version,
            ",".join(aliases.get((mv.name, mv.version), [])),
            _when(mv.created),
            mv.tags.get(Tag.DATA_VERSION, ""),
            mv.tags.get(Tag.GATE, "-"),
        )
    console.print(table)


@app.command("show")
def show(ref: str = typer.Argument(..., help="NAME[@alias] or NAME/VERSION")) -> None:
    """Lineage: data version -> run -> model version -> alias history."""
    reg = registry()
    mv = reg.resolve(ref)
    run = reg.run(mv.run_id)
    parsed = ModelRef.parse(ref)
    tree = Tree(f"[bold]{mv.name}[/bold] version {mv.version}  ({parsed})")
    data = tree.add("data")
    data.add(f"dataset version {mv.tags.get(Tag.DATA_VERSION, '?')}")
    for dataset in run.datasets:
        data.add(
            f"MLflow dataset input {dataset.name} ({dataset.context}, digest {dataset.digest})"
        )
    for key in (Tag.FEEDBACK_IDS, Tag.PARENT_VERSION):
        if key in run.tags:
            data.add(f"{key.removeprefix(Tag.PREFIX)}: {run.tags[key]}")
    r = tree.add(f"run {mv.run_id} ({run.status}, {_when(run.started)})")
    r.add(f"code commit {run.tags.get(Tag.CODE_COMMIT, '?')}")
    params = run.params
    r.add(
        f"backbone {params.get('backbone')}, input {params.get('input_size')} px, seed "
        f"{params.get('seed')}, epochs {params.get('epochs')}"
    )
    metrics = run.metrics
    keys = (
        "val_macro_f1",
        "val_ece_before",
        "val_ece_after",
        "temperature",
        "onnx_parity_max_abs_diff",
    )
    r.add(", ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics))
    version = tree.add(f"model version {mv.version} (created {_when(mv.created)})")
    card = reg.load(f"{mv.name}/{mv.version}").card
    decision = version.add("operating thresholds")
    decision.add(f"version: {_cuts(card.thresholds)}")
    for site, cuts in sorted(card.site_thresholds.items()):
        decision.add(f"site {site}: {_cuts(cuts)}")
    for key, value in sorted(mv.radvigil_tags.items()):
        version.add(f"{key}: {value[:200]}")
    history = tree.add("alias history")
    for event in reg.alias_history(mv.name):
        history.add(
            f"{event.time}  {event.alias} -> {event.version}  by {event.actor}: {event.reason}"
        )
    console.print(tree)


def _cuts(thresholds: dict[str, float]) -> str:
    return ", ".join(f"{finding} {cut:.3f}" for finding, cut in sorted(thresholds.items()))


@app.command("alias")
def alias(
    name: str = typer.Argument(..., help="Registered model name."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="champion, challenger, ..."),
    version: str = typer.Argument(..., help="Model version number."),
    reason: str | None = typer.Option(None, help="Why; recorded in the alias history and audit."),
    force: bool = typer.Option(
        False, "--force", help="Move champion/challenger without a passing gate (needs --reason)."
    ),
) -> None:
    """Point an alias at a version; champion/challenger need a passing gate (or --force)."""
    reg = registry()
    changed = move_alias(
        reg,
        name,
        alias_name,
        version,
        actor=actor(),
        reason=reason,
        record=cli_recorder(name),
        force=force,
        deployments=deployments(reg),
    )
    console.print(f"{name}@{alias_name} -> {version}" + ("" if changed else " (unchanged)"))


@app.command("sync-registry")
def sync_registry(
    name: str = typer.Argument(..., help="Registered model name."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in MLflow's alias history)."),
) -> None:
    """Write radvigil's deployment state back over MLflow's aliases and rollout tag, undoing a
    change made in MLflow directly (docs/registry-trust.md)."""
    reg = registry()
    authority = deployments(reg)
    if authority is None:
        raise ConfigError("sync-registry needs RADVIGIL_REGISTRY_TRUST=enforce")
    changed = authority.mirror(name, actor=actor(), reason=reason)
    authority.audit.append(
        actor=actor(),
        action="registry.sync",
        object_type="model",
        object_id=name,
        details={"reason": reason, "restored": changed},
    )
    console.print(f"{name}: restored {', '.join(changed) if changed else 'nothing (in sync)'}")


@app.command("card")
def card(ref: str = typer.Argument(..., help="NAME[@alias] or NAME/VERSION")) -> None:
    """Print the model card (JSON) of a version."""
    loaded = registry().load(ref)
    typer.echo(json.dumps(loaded.card.model_dump(mode="json"), indent=2))


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="The ONNX file radvigil did not train."),
    spec: Path = typer.Option(..., "--spec", help="Input/output spec YAML (docs/byom.md)."),
    data: str = typer.Option(..., "--data", help="Dataset version to validate on (its val split)."),
    name: str | None = typer.Option(None, help="Registered model name (default: the task's)."),
    source: str = typer.Option("not declared", help="Where the file came from (vendor, URL)."),
    licence: str = typer.Option("not declared", help="Its licence, as stated by the supplier."),
    intended_use: str = typer.Option("not declared", help="Its declared intended use."),
    keep_vendor_thresholds: bool = typer.Option(
        False, help="Keep the spec's vendor_thresholds (and temperature 1) instead of fitting."
    ),
    criteria: Path = typer.Option(CONFIGS / "gates.yaml", help="Gate criteria YAML."),
    against: str = typer.Option("champion", help="Alias or NAME/VERSION to gate against; 'none'."),
) -> None:
    """Check, calibrate, profile, register and gate an outside ONNX model (exit 1: gate failed)."""
    from radvigil.evaluation import load_criteria  # heavy: torch, MLflow, onnx
    from radvigil.loop.model_import import ImportRequest, import_model
    from radvigil.model.byom.spec import load_spec

    settings = get_settings()
    reg, cat = registry(), catalog()
    request = ImportRequest(
        file=file,
        spec=load_spec(spec),
        data_ref=data,
        importer=actor(),
        name=name,
        source=source,
        licence=licence,
        intended_use=intended_use,
        keep_vendor_thresholds=keep_vendor_thresholds,
    )
    task_name = name or request.spec.resolved_task().name
    outcome = import_model(
        request,
        cat,
        reg,
        max_bytes=int(settings.import_max_mb * 2**20),
        extractor_cache=settings.home_dir / "extractors",
        reports_dir=settings.reports_dir,
        criteria=load_criteria(criteria),
        against=against,
        record=cli_recorder(task_name),
        deployments=deployments(reg),
    )
    card_ = outcome.card
    sha = card_.imported.file_sha256[:12] if card_.imported else "?"  # an import always has one
    console.print(
        f"registered [bold]{outcome.name}/{outcome.version}[/bold] from {file.name} "
        f"(sha256 {sha}), temperature {card_.temperature:.3f}, thresholds {card_.thresholds}"
    )
    if outcome.verdict is not None:
        status = "PASS" if outcome.verdict.passed else "FAIL"
        console.print(f"gate: {status}")
        for row in outcome.verdict.failures:
            console.print(f"[red]FAIL[/red] {row.message}")
    console.print(f"report: {outcome.report}")
    raise typer.Exit(0 if outcome.verdict is None or outcome.verdict.passed else 1)
