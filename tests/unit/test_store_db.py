"""The database handle and migrations on SQLite: upgrade, schema checks, error mapping."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from radvigil.config import Settings
from radvigil.errors import ConfigError, StoreError, StoreUnavailableError
from radvigil.store import (
    Database,
    PredictionStore,
    check_schema,
    current_revision,
    head_revision,
    upgrade_database,
)
from radvigil.store.migrate import MIGRATIONS
from radvigil.store.tables import Base


def test_upgrade_creates_every_table_and_is_idempotent(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(StoreError, match="run `radvigil db upgrade`"):
        check_schema(db)
    assert current_revision(db) is None

    assert upgrade_database(db) == head_revision()
    assert upgrade_database(db) == head_revision()
    check_schema(db)
    tables = set(inspect(db.engine).get_table_names())
    assert {"predictions", "feedback", "api_keys", "audit_events", "alembic_version"} <= tables


def test_migrations_match_the_table_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade_database(db)
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_migration_scripts_ship_inside_the_package() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()
    assert list((MIGRATIONS / "versions").glob("0001_*.py"))


def test_missing_schema_reads_as_unavailable_so_writes_are_kept(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(StoreUnavailableError, match="schema is missing"):
        PredictionStore(db).count()


def test_unreachable_database_fails_the_liveness_check(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'no-such-dir' / 'r.db'}")
    with pytest.raises(StoreUnavailableError, match="liveness check: database unavailable"):
        db.check()


def test_bad_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        Database("mysql://localhost/x")
    with pytest.raises(ConfigError, match="invalid database URL"):
        Database("not a url")


def test_postgres_urls_use_psycopg_and_hide_passwords() -> None:
    db = Database("postgresql://user:secret@db.example:5432/radvigil")
    assert db.url.drivername == "postgresql+psycopg"
    assert "secret" not in db.display_url
    assert "secret" not in repr(db)


def test_from_settings_uses_sqlite_in_home(home: Settings) -> None:
    db = Database.from_settings(home)
    db.check()
    assert db.backend == "sqlite"
    assert str(home.home_dir) in db.display_url


def test_immediate_sessions_take_the_sqlite_write_lock_up_front(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    db = Database(f"sqlite:///{path}")
    upgrade_database(db)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with db.session("read", immediate=False) as session:
        session.execute(text("SELECT 1"))
        other.execute("BEGIN IMMEDIATE")  # a plain session leaves writers free
        other.execute("ROLLBACK")
    with db.session("read then write", immediate=True) as session:
        session.execute(text("SELECT 1"))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.close()
    db.dispose()
