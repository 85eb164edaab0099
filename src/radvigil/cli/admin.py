"""``radvigil db``, ``radvigil keys`` and ``radvigil audit``: the database, API keys, audit log.

Key changes and upgrades run from the CLI are themselves audited, with actor ``cli:<os user>``.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from radvigil.cli.common import console, err_console
from radvigil.config import get_settings
from radvigil.loop.actions import version_recorder
from radvigil.loop.governance import Recorder
from radvigil.store import (
    ROLES,
    AuditLog,
    Database,
    KeyStore,
    check_schema,
    current_revision,
    head_revision,
    upgrade_database,
)
from radvigil.store.archive_audit import verify_archive_against_audit
from radvigil.store.keys import DEFAULT_RATE_LIMIT
from radvigil.store.retention import MANIFEST, prune, verify_archive
from radvigil.store.rollups import rebuild

if TYPE_CHECKING:
    from radvigil.loop.deployment import Deployments
    from radvigil.registry import Registry

db_app = typer.Typer(no_args_is_help=True, help="The metadata database: migrate, inspect.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log: verify the chain, list.")


def database(*, migrated: bool = True) -> Database:
    """The settings' database; with ``migrated``, refuse one whose schema is not current."""
    db = Database.from_settings(get_settings())
    if migrated:
        check_schema(db)
    return db


def actor() -> str:
    """Who the audit log records for CLI actions: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


def deployments(registry: Registry) -> Deployments | None:
    """radvigil's deployment authority (signed gates, alias and rollout state) under
    ``RADVIGIL_REGISTRY_TRUST=enforce``, the default; None when trust is off."""
    from radvigil.loop.deployment import deployments_for

    settings = get_settings()
    if settings.registry_trust != "enforce":
        return None  # trust off: nothing is signed, so no database is needed
    db = database()
    return deployments_for(True, db, registry, AuditLog(db, secret=settings.audit_key))


def cli_recorder(model_name: str) -> Recorder:
    """Audit a model-version action done from the CLI (the rollout/governance ``record``)."""
    return version_recorder(AuditLog(database()), model_name)


def _time(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}Z"


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Option("head", help="Migrate up to this revision."),
) -> None:
    """Create or migrate the database schema (safe to run again)."""
    db = database(migrated=False)
    before = current_revision(db)
    after = upgrade_database(db, revision)
    if after != before:
        AuditLog(db).append(
            actor=actor(),
            action="db.upgrade",
            object_type="database",
            details={"from": before, "to": after},
        )
    console.print(f"{db.display_url}: schema at revision [bold]{after}[/bold]")


@db_app.command("status")
def db_status() -> None:
    """Show the database URL (password hidden), liveness and schema revision."""
    db = database(migrated=False)
    db.check()
    current, head = current_revision(db), head_revision()
    state = "up to date" if current == head else "run `radvigil db upgrade`"
    console.print(
        f"{db.display_url}: reachable, schema {current or 'empty'} (head {head}, {state})"
    )


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="Unique key name; recorded as the actor."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    rate_limit: int = typer.Option(DEFAULT_RATE_LIMIT, help="Requests per minute."),
) -> None:
    """Create an API key and print its token once: it cannot be shown again."""
    db = database()
    token, key = KeyStore(db).create(name, role, rate_limit=rate_limit, actor=actor())
    err_console.print(
        f"created {key.role} key [bold]{key.name}[/bold]; store the token now, "
        "it will not be shown again:",
        highlight=False,
    )
    typer.echo(token)


@keys_app.command("list")
def keys_list(
    active: bool = typer.Option(False, "--active", help="Hide revoked keys."),
) -> None:
    """List API keys (names, roles, prefixes; never tokens)."""
    table = Table(title="API keys")
    for column in ("name", "role", "prefix", "rate/min", "created", "revoked"):
        table.add_column(column)
    for key in KeyStore(database()).list(include_revoked=not active):
        table.add_row(
            key.name,
            key.role,
            key.prefix,
            str(key.rate_limit),
            _time(key.created_at),
            _time(key.revoked_at),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="Name of the key to revoke.")) -> None:
    """Revoke an API key; requests with its token are refused from now on."""
    db = database()
    key = KeyStore(db).revoke(name, actor=actor())
    console.print(f"revoked key [bold]{key.name}[/bold] at {_time(key.revoked_at)}")


@audit_app.command("verify")
def audit_verify(
    head: str | None = typer.Option(
        None, help="A head hash saved earlier; fail if it is no longer in the chain."
    ),
    full: bool = typer.Option(
        False, "--full", help="Walk every record from 1, not only those after the checkpoint."
    ),
) -> None:
    """Check the hash chain: exit 0 when intact, 1 with the first bad record otherwise.

    Without ``--full`` only the records after the signed checkpoint of the last verification
    are walked (and the checkpoint's own record re-checked); schedule ``--full`` as well.
    """
    result = AuditLog(database()).verify(expected_head=head, full=full)
    if not result.ok:
        err_console.print(
            f"[red]audit chain broken[/red] at record {result.first_bad_id}: {result.reason} "
            f"({result.checked} records verified before it)",
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(
        f"audit chain intact: {result.checked} records"
        + (f" after checkpoint {result.from_id}" if result.from_id else "")
        + f", head {result.last_id} "
        f"hash {result.head_hash}",
        highlight=False,
    )


@audit_app.command("list")
def audit_list(
    limit: int = typer.Option(20, min=1, help="How many records, newest first."),
    action: str | None = typer.Option(None, help="Only this action, e.g. key.create."),
) -> None:
    """Show the newest audit records."""
    table = Table(title="audit log")
    for column in ("id", "time", "actor", "action", "object", "model", "request", "hash"):
        table.add_column(column)
    for event in AuditLog(database()).list(limit=limit, action=action):
        target = event.object_type + (f":{event.object_id}" if event.object_id else "")
        table.add_row(
            str(event.id),
            _time(event.created_at),
            event.actor,
            event.action,
            target,
            event.model_version or "",
            event.request_id or "",
            event.hash[:12],
        )
    console.print(table)


@db_app.command("prune")
def db_prune(
    before: datetime | None = typer.Option(
        None,
        help="Remove rows older than this UTC date/time [default: now minus "
        "RADVIGIL_RETENTION_DAYS].",
    ),
    archive: Path | None = typer.Option(
        None,
        help="Archive folder (Parquet per month and table + manifest.json) "
        "[default: RADVIGIL_RETENTION_ARCHIVE, else HOME/archive].",
    ),
    no_archive: bool = typer.Option(False, "--no-archive", help="Delete without archiving."),
) -> None:
    """Move old predictions and monitor results to Parquet, then delete them in batches.

    Labelled or noted predictions, alert windows and the audit log are kept.
    """
    settings = get_settings()
    cut = before.replace(tzinfo=UTC) if before else datetime.now(UTC)
    if before is None:
        cut -= timedelta(days=settings.retention_days)
    folder = (
        None
        if no_archive
        else archive or settings.retention_archive or (settings.home_dir / "archive")
    )
    db = database()
    report = prune(
        db,
        cut,
        folder,
        batch_size=settings.retention_batch_size,
        audit=AuditLog(db),
        actor=actor(),
    )
    for name, count in report.deleted.items():
        console.print(f"{name}: {count:,} deleted, {report.kept.get(name, 0):,} older kept")
    if folder is not None:
        console.print(f"archive: {folder} ({len(report.files)} new file(s), {MANIFEST})")


@db_app.command("rebuild-rollups")
def db_rebuild_rollups() -> None:
    """Recount the rollup tables (predictions and latency per hour, latest labels per day)
    from the raw rows, e.g. after rows were loaded around the writer. Writers wait meanwhile."""
    with database().transaction("rebuild rollups") as conn:
        rebuild(conn)
    console.print("rollups rebuilt from the predictions and labels in the database")


@db_app.command("verify-archive")
def db_verify_archive(
    archive: Path = typer.Argument(..., help="A folder `radvigil db prune` archived into."),
    manifest_only: bool = typer.Option(
        False,
        "--manifest-only",
        help="Check the files against manifest.json only, without the database.",
    ),
) -> None:
    """Prove an archive against the audit chain: the files and checksums the db.prune records
    name, the pruned prediction ids, each archived prediction's audited outputs (exit 1 if
    not). The manifest's SHA-256 and row counts are checked first."""
    if manifest_only:
        problems = verify_archive(archive)
    else:
        problems = verify_archive_against_audit(archive, AuditLog(database()))
    for problem in problems:
        err_console.print(problem)
    if problems:
        raise typer.Exit(1)
    if manifest_only:
        console.print(f"{archive}: every file matches its checksum")
    else:
        console.print(
            f"{archive}: every file matches its checksum and its db.prune audit record; "
            "the archived predictions are the pruned set, with their audited outputs"
        )
