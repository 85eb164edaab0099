"""Alembic environment for radvigil's metadata database.

Called from :func:`radvigil.store.migrate.upgrade_database` with a live connection in
``config.attributes["connection"]``, or from the ``alembic`` command line, where the URL comes
from ``-x url=...``, then ``sqlalchemy.url``, then radvigil's settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from radvigil.config import get_settings
from radvigil.store.db import Database
from radvigil.store.tables import Base

MIGRATION_LOCK = 7_248_310_001  # pg_advisory_xact_lock key: one migrator at a time

config = context.config
target_metadata = Base.metadata


def _url() -> str | None:
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


def run_offline() -> None:
    url = _url() or get_settings().resolved_database_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = _url()
    db = Database(url) if url else Database.from_settings(get_settings())
    try:
        with db.engine.begin() as conn:
            _run(conn)
    finally:
        db.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
