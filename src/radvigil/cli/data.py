"""``radvigil data``: import, list, describe, validate and shift dataset versions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from radvigil.cli.common import console, parse_pairs, track
from radvigil.config import get_settings
from radvigil.data.catalog import DatasetCatalog
from radvigil.data.importers import from_csv, from_folder
from radvigil.errors import DataError

app = typer.Typer(no_args_is_help=True, help="Dataset versions: import, inspect, QC, shift.")


def catalog() -> DatasetCatalog:
    settings = get_settings()
    settings.ensure_home()
    return DatasetCatalog(settings.datasets_dir)


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
            meta.get("created_at", ""),
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
