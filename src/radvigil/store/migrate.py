"""Schema migrations: run the Alembic scripts shipped in ``store/migrations`` from code.

No ``alembic.ini`` is needed at runtime; ``store/migrations/alembic.ini`` exists only so that
developers can run ``alembic -c src/radvigil/store/migrations/alembic.ini revision ...``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from radvigil.errors import StoreError
from radvigil.store.db import Database, store_error

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An in-memory Alembic config pointing at the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration shipped with this radvigil."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError(f"no migrations found in {MIGRATIONS}")
    return head


def current_revision(db: Database) -> str | None:
    """The migration the database is at (None for an empty database)."""
    with db.transaction("read schema revision") as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_database(target: str | Database, revision: str = "head") -> str:
    """Migrate the database (a URL or a Database) up to ``revision``; return where it ends.

    Runs in one transaction on PostgreSQL and SQLite, so a failed step leaves nothing half-done.
    """
    db = target if isinstance(target, Database) else Database(target)
    config = alembic_config()
    try:
        with db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        return current_revision(db) or "nothing"
    except SQLAlchemyError as exc:
        raise store_error(exc, "upgrade database") from exc
    except CommandError as exc:
        raise StoreError(f"upgrade database: {exc}") from exc
    finally:
        if db is not target:
            db.dispose()


def check_schema(db: Database) -> None:
    """Raise StoreError unless the database's schema is at the newest migration."""
    current, head = current_revision(db), head_revision()
    if current != head:
        raise StoreError(
            f"database schema is at {current or 'nothing'}, expected {head}; "
            "run `radvigil db upgrade`"
        )
