"""``radvigil data``: import, list, describe, validate and shift dataset versions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from radvigil.cli.common import console, err_console, parse_pairs, track
from radvigil.cli.context import catalog
from radvigil.config import get_settings
from radvigil.data.derived import derive
from radvigil.data.importers import from_csv, from_folder
from radvigil.data.qc_checks import load_qc_config
from radvigil.data.qc_result import QCReport
from radvigil.data.quality import FailOn, QCConfig, exclude_failing, qc_offenders, run_qc
from radvigil.data.shifts import SHIFTS, compose, parse_shift
from radvigil.errors import DataError

app = typer.Typer(no_args_is_help=True, help="Dataset versions: import, inspect, QC, shift.")


@app.command("import")
def import_(
    source: Path = typer.Argument(..., help="CSV manifest, ImageFolder tree, or DICOM folder."),
    labels: Path | None = typer.Option(
        None, help="Label CSV (path,label[,split,...]) for a DICOM folder; paths relative to it."
    ),
    root: Path | None = typer.Option(None, help="Folder the manifest's paths are relative to."),
    where: list[str] | None = typer.Option(
        None, help="Keep rows where COLUMN=VALUE[,VALUE...]; repeatable."
    ),
    name: str | None = typer.Option(None, help="A friendly name to refer to this version by."),
    seed: int | None = typer.Option(None, help="Seed for splits when the source has none."),
) -> None:
    """Import images as a new dataset version and print its id (same inputs, same id)."""
    settings = get_settings()
    seed = settings.seed if seed is None else seed
    filters = parse_pairs(where, "--where")
    progress = lambda items: track(items, "hashing + decoding")  # noqa: E731
    if labels is not None:
        result = from_csv(
            labels,
            root=root or source,
            where=filters,
            seed=seed,
            max_pixels=settings.max_image_pixels,
            progress=progress,
        )
    elif source.is_file():
        result = from_csv(
            source,
            root=root,
            where=filters,
            seed=seed,
            max_pixels=settings.max_image_pixels,
            progress=progress,
        )
    elif source.is_dir():
        if filters:
            raise DataError("--where applies to CSV manifests, not folders")
        result = from_folder(
            source, seed=seed, max_pixels=settings.max_image_pixels, progress=progress
        )
    else:
        raise DataError(f"{source} does not exist")
    vid = catalog().save(result.version, name=name)
    if result.rejected:
        table = Table(title=f"{len(result.rejected)} file(s) not imported")
        table.add_column("file")
        table.add_column("reason")
        for path, reason in result.rejected:
            table.add_row(path, reason)
        console.print(table)
    console.print(f"imported {len(result.version.frame)} images as [bold]{vid}[/bold]")
    typer.echo(vid)


@app.command("list")
def list_() -> None:
    """List dataset versions, oldest first."""
    table = Table("id", "name", "items", "created", "source")
    for meta in catalog().list():
        source = meta.get("source", {})
        table.add_row(
            meta["id"],
            meta.get("name", ""),
            str(meta.get("items", "")),
            meta.get("created_at", "")[:19],
            source.get("kind", "") if source else "",
        )
    console.print(table)


@app.command("info")
def info(
    version: str = typer.Argument("latest", help="Version id, unique prefix, name or 'latest'."),
    by: str = typer.Option("site", help="Extra breakdown column (site, view_position, ...)."),
) -> None:
    """Counts per split x label x site (or another column)."""
    ds = catalog().load(version)
    counts = ds.counts(["split", "label", by]).reset_index()
    table = Table(title=f"{ds.id} ({len(ds.frame)} images, root {ds.root})")
    for column in ("split", "label", by, "images"):
        table.add_column(column, justify="right" if column == "images" else "left")
    for row in counts.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    console.print(table)
    pivot = ds.frame.pivot_table(
        index="split", columns="label", values="path", aggfunc="count", fill_value=0
    )
    summary = Table(title="split x label")
    summary.add_column("split")
    for label in pivot.columns:
        summary.add_column(str(label), justify="right")
    summary.add_column("total", justify="right")
    for split, row in pivot.iterrows():
        summary.add_row(str(split), *[str(v) for v in row], str(int(row.sum())))
    console.print(summary)


@app.command("validate")
def validate(
    version: str = typer.Argument("latest", help="Version id, unique prefix, name or 'latest'."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Write the JSON report here [default: HOME/reports/qc-<id>.json]."
    ),
    exclude: bool = typer.Option(
        False, "--exclude", help="Save a new version without the items that failed a check."
    ),
    config: Path | None = typer.Option(None, help="YAML file of QC thresholds (QCConfig)."),
    name: str | None = typer.Option(None, help="Name for the version --exclude saves."),
    fail_on: FailOn = typer.Option(
        "error",
        "--fail-on",
        help="Exit 1 when any image has a flag of this severity or worse: 'error' (a failing "
        "check) or 'warning' (any flag). With --exclude, the saved version is what is judged.",
    ),
) -> None:
    """Image QC (size, shape, contrast, clipping, colour, duplicates, leakage) and a report.

    Exits 1 when an image fails (``--fail-on``), as CI tools do, so a pipeline stops there.
    """
    cat = catalog()
    ds = cat.load(version)
    qc_config = load_qc_config(config) if config else QCConfig()
    report = run_qc(ds, qc_config, progress=lambda items: track(items, "checking images"))
    print_qc_report(report)
    target = json_path or get_settings().reports_dir / f"qc-{ds.id}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report.model_dump_json(indent=2))
    console.print(f"JSON report: {target}")
    if exclude:
        kept = exclude_failing(ds, report)
        if kept is ds:
            console.print("no item failed a check; nothing to exclude")
        else:
            vid = cat.save(kept, name=name)
            console.print(
                f"saved [bold]{vid}[/bold]: {len(kept.frame)} images, "
                f"{len(report.failing_paths())} excluded from {ds.id}"
            )
            typer.echo(vid)
            report = report.without(report.failing_paths())
    offending = qc_offenders(report, fail_on)
    if offending:
        err_console.print(
            f"QC {fail_on}: {len(offending)} image(s) of {ds.id} flagged at or above "
            f"'{fail_on}' (see {target})"
        )
        raise typer.Exit(1)


def print_qc_report(report: QCReport) -> None:
    table = Table(title=f"QC of {report.version_id} ({report.items} images)")
    for column in ("check", "severity", "threshold", "flagged"):
        table.add_column(column, justify="right" if column == "flagged" else "left")
    for item in report.checks:
        table.add_row(item.check, item.severity, item.threshold, str(item.flagged))
    console.print(table)
    for kind in ("exact", "near"):
        groups, crossing = report.duplicate_counts(kind)
        console.print(f"{kind}-duplicate groups: {groups} ({crossing} cross splits)")
    failing = report.failing_paths()
    console.print(
        f"{len(failing)} image(s) fail, {len(report.warned_paths())} more have warnings only"
    )
    flags = report.flags_frame()
    shown = flags[flags["severity"] == "fail"].head(15)
    if not shown.empty:
        detail = Table("path", "check", "message", title="first failures")
        for row in shown.itertuples(index=False):
            detail.add_row(row.path, row.check, row.message)
        console.print(detail)


@app.command("shift")
def shift(
    version: str = typer.Argument("latest", help="Version id, unique prefix, name or 'latest'."),
    shifts: list[str] | None = typer.Option(
        None,
        "--shift",
        help=f"NAME[:key=value,...] (key 'strength' scales the default); repeatable, applied in "
        f"order. Names: {', '.join(SHIFTS)}.",
    ),
    seed: int | None = typer.Option(None, help="Seed for noise and resampling."),
    split: str | None = typer.Option(None, help="Keep one split only (train, val or test)."),
    prevalence: list[str] | None = typer.Option(
        None, help="LABEL=FACTOR: multiply the class's share, renormalise, resample; repeatable."
    ),
    where: list[str] | None = typer.Option(
        None, help="Keep rows where COLUMN=VALUE[,VALUE...] (site, view_position...); repeatable."
    ),
    name: str | None = typer.Option(None, help="A friendly name for the new version."),
) -> None:
    """Save a shifted copy of a version: pixel shifts and/or a population scenario."""
    if not (shifts or prevalence or where or split):
        raise DataError("nothing to do: give --shift, --prevalence, --where or --split")
    seed = get_settings().seed if seed is None else seed
    pipeline = compose(*(parse_shift(text) for text in shifts or []))
    factors = _factors(parse_pairs(prevalence, "--prevalence"))
    cat = catalog()
    parent = cat.load(version)
    with cat.staging() as staged:
        derived = derive(
            parent,
            seed=seed,
            split=split,
            where=parse_pairs(where, "--where"),
            prevalence=factors,
            shift=pipeline,
            out_root=staged,
            progress=lambda items: track(items, "shifting images"),
        )
        if pipeline.shifts:
            vid = cat.save_with_images(derived, staged, name=name)
        else:
            vid = cat.save(derived, name=name)
    console.print(
        f"saved [bold]{vid}[/bold]: {len(derived.frame)} images derived from {parent.id} "
        f"(images in {derived.root})"
    )
    typer.echo(vid)


def _factors(pairs: dict[str, str]) -> dict[str, float]:
    try:
        return {label: float(value) for label, value in pairs.items()}
    except ValueError:
        raise typer.BadParameter(
            f"expected LABEL=NUMBER, got {pairs}", param_hint="--prevalence"
        ) from None
