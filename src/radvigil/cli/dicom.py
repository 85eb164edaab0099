"""``radvigil dicom``: receiver (listen), pull mode (pull), outbox (status), retry."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from radvigil.cli.admin import database
from radvigil.cli.common import console

app = typer.Typer(no_args_is_help=True, help="PACS in and out: receive studies, deliver results.")


@app.command("listen")
def listen_command() -> None:
    """Receive CR/DX studies by C-STORE, predict each, send SR + Secondary Capture back.

    Configured by RADVIGIL_DICOM_* (receiver) and RADVIGIL_PACS_* (delivery); see docs/pacs.md.
    """
    from radvigil.cli.context import registry
    from radvigil.config import get_settings
    from radvigil.pacs.node import PacsNode

    settings = get_settings()
    node = PacsNode(settings, registry())
    console.print(
        f"DICOM receiver {settings.dicom_ae_title} on {settings.dicom_host}:"
        f"{settings.dicom_port}, results by {settings.pacs_send}"
    )
    node.serve()


@app.command("pull")
def pull_command(
    source: list[str] = typer.Option(
        None, "--source", help="Poll only this pull source (repeatable; default: all)."
    ),
    every: float | None = typer.Option(
        None,
        min=1.0,
        help="Keep polling every this many seconds until interrupted (default: poll once).",
    ),
) -> None:
    """Ask the PACSs in RADVIGIL_DICOM_PULL_SOURCES for new CR/DX studies and predict them.

    QIDO-RS search since each source's checkpoint, WADO-RS retrieve of what was not pulled
    before, then the same spool, worker and outbox as `radvigil dicom listen`; see docs/pacs.md.
    """
    from radvigil.cli.context import registry
    from radvigil.config import get_settings
    from radvigil.errors import PacsUnavailableError
    from radvigil.pacs.node import PacsNode

    settings = get_settings()
    node = PacsNode(settings, registry(), receive=False)
    if every is not None:
        node.check_sources(source or [])
        console.print(f"polling {', '.join(source or node.pullers)} every {every:g} s")
        node.serve(pull_every=every, pull_sources=source or [])
        return
    outcomes = asyncio.run(node.pull_once(source or []))
    table = Table("source", "studies", "fetched", "stored", "ignored", "refused", "already")
    for o in outcomes:
        if o.report is not None:
            r = o.report
            counts = (r.studies, r.fetched, r.stored, r.ignored, r.refused, r.skipped)
            table.add_row(o.source, *(str(n) for n in counts))
    console.print(table)
    failed = [o.error for o in outcomes if o.error]
    if failed:
        raise PacsUnavailableError("; ".join(failed))


@app.command("status")
def status_command(
    limit: int = typer.Option(20, help="Newest outbox rows to list."),
    state: str | None = typer.Option(None, help="Only rows in this state: pending|delivered|dead."),
) -> None:
    """The outbox per state, per-AE traffic, pull sources' checkpoints, the newest outbox rows."""
    from radvigil.errors import InputError
    from radvigil.store.pacs import OUTBOX_STATES, PacsStore
    from radvigil.store.pacs_pull import PullStore

    if state is not None and state not in OUTBOX_STATES:
        raise InputError(f"--state must be pending, delivered or dead, not {state!r}")
    store = PacsStore(database())
    counts = store.counts()
    console.print(" ".join(f"{k}={v}" for k, v in counts.items()))
    traffic = Table("calling AE", "state", "instances")
    for (ae, outcome), n in sorted(store.instance_counts().items()):
        traffic.add_row(ae, outcome, str(n))
    console.print(traffic)
    polls = PullStore(store.db).checkpoints()
    if polls:
        sources = Table("pull source", "checkpoint", "last poll", "last error")
        for c in polls:
            since = c.since.isoformat() if c.since else "-"
            when = c.polled_at.isoformat(timespec="seconds")
            sources.add_row(c.source, since, when, c.last_error or "")
        console.print(sources)
    rows = Table("id", "kind", "to", "state", "attempts", "next attempt", "last error")
    for e in store.entries(state, limit):
        rows.add_row(
            str(e.id),
            e.kind,
            e.destination,
            e.state,
            str(e.attempts),
            e.next_attempt_at.isoformat(timespec="seconds"),
            e.last_error or "",
        )
    console.print(rows)


@app.command("retry")
def retry_command(
    ids: list[int] = typer.Argument(None, help="Outbox ids to retry (default: every dead letter)."),
) -> None:
    """Put dead-lettered results back in the queue (audited); the running listener sends them."""
    from radvigil.cli.admin import actor
    from radvigil.loop.pacs import retry_dead_letters
    from radvigil.store import AuditLog
    from radvigil.store.pacs import PacsStore

    db = database()
    count = retry_dead_letters(PacsStore(db), AuditLog(db), actor(), ids or [])
    console.print(f"{count} dead-lettered result(s) queued again")
