"""What every CLI command shares: error mapping, the console, progress bars, settings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from radvigil.errors import RadvigilError

# Shipped YAML configs (fast/full training, gates, monitoring) in the source checkout.
CONFIGS = Path(__file__).resolve().parents[3] / "configs"
console = Console()
err_console = Console(stderr=True)
ERROR_EXIT = 2


class ErrorHandlingGroup(TyperGroup):
    """Turn any RadvigilError raised by a command into one line on stderr and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RadvigilError as exc:
            err_console.print(
                f"[red]error[/red] ({exc.code}): {exc.message}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(ERROR_EXIT) from exc


def counting_progress() -> Progress:
    """A Rich progress display on stderr with description, bar, done/total and elapsed time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def track(items: Iterable, description: str) -> Iterator:
    """A Rich progress bar over ``items`` (with count and elapsed time)."""
    seq = list(items)
    with counting_progress() as progress:
        task = progress.add_task(description, total=len(seq))
        for item in seq:
            yield item
            progress.advance(task)


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """Parse repeated ``KEY=VALUE`` options into a dict."""
    out: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        out[key.strip()] = rest.strip()
    return out
