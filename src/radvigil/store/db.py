"""The database handle: engine, sessions, liveness and schema checks, error mapping.

SQLite (the embedded default) and PostgreSQL are supported. On SQLite the engine enables
foreign keys and WAL, and SQLAlchemy, not pysqlite, emits ``BEGIN`` so that transactions
(and ``BEGIN IMMEDIATE`` for writers that must read-then-write) mean what they say.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from radvigil.config import Settings
from radvigil.errors import ConfigError, StoreError, StoreUnavailableError

log = logging.getLogger(__name__)

SUPPORTED = ("sqlite", "postgresql")
IMMEDIATE = "radvigil_sqlite_immediate"


def store_error(exc: SQLAlchemyError, doing: str) -> StoreError:
    """Map a SQLAlchemy error to a StoreError, without echoing SQL parameters (they hold data).

    Connection failures and a missing schema become StoreUnavailableError: the data is fine
    and the same write will succeed once the database is back (or upgraded).
    """
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if type(orig).__name__ == "UndefinedTable" or "no such table" in detail:
        return StoreUnavailableError(
            f"{doing}: database schema is missing or out of date ({detail}); "
            "run `radvigil db upgrade`"
        )
    unavailable = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
    if isinstance(exc, unavailable):
        return StoreUnavailableError(f"{doing}: database unavailable ({detail})")
    return StoreError(f"{doing}: {type(orig).__name__}: {detail}")


class Database:
    """One database: an engine with a connection pool and a session factory.

    Args:
        url: SQLAlchemy URL; ``postgresql://`` is read as ``postgresql+psycopg://``.
        connect_timeout_s: give up connecting after this long, so an outage is noticed fast.
    """

    def __init__(self, url: str | URL, *, connect_timeout_s: int = 5) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(f"invalid database URL: {exc}") from exc
        backend = parsed.get_backend_name()
        if backend not in SUPPORTED:
            raise ConfigError(f"unsupported database {backend!r}; use one of {SUPPORTED}")
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            connect_args["connect_timeout"] = connect_timeout_s
        else:
            connect_args.update(timeout=30, check_same_thread=False)
        self.engine: Engine = create_engine(
            parsed, pool_pre_ping=True, connect_args=connect_args, json_serializer=_json_dumps
        )
        if backend == "sqlite":
            _configure_sqlite(self.engine, file_based=parsed.database not in (None, "", ":memory:"))
        # Same pool; on SQLite its transactions start with BEGIN IMMEDIATE (the write lock).
        self.writer_engine: Engine = self.engine.execution_options(**{IMMEDIATE: True})
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The database the settings name (creating the home folder for the SQLite default)."""
        if settings.database_url is None:
            settings.ensure_home()
        return cls(settings.resolved_database_url)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    @property
    def display_url(self) -> str:
        """The URL with its password hidden, fit for logs and CLI output."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @contextmanager
    def session(self, doing: str, *, immediate: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on error (mapped to StoreError).

        Args:
            doing: what the caller does, for error messages ("write feedback").
            immediate: the session reads then writes; on SQLite take the write lock up
                front, so a concurrent writer makes it wait instead of fail.
        """
        bind = self.writer_engine if immediate else self.engine
        try:
            with self.sessions(bind=bind) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise store_error(exc, doing) from exc

    @contextmanager
    def transaction(self, doing: str, *, immediate: bool = False) -> Iterator[Connection]:
        """A Core connection in a transaction; ``immediate`` takes SQLite's write lock up front."""
        try:
            engine = self.writer_engine if immediate else self.engine
            with engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise store_error(exc, doing) from exc

    def check(self) -> None:
        """Raise StoreUnavailableError unless the database answers ``SELECT 1``."""
        with self.transaction("liveness check") as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (the Database stays usable and reconnects on demand)."""
        self.engine.dispose()


def _json_dumps(value: Any) -> str:
    """JSON columns through orjson: several times faster than ``json.dumps`` in the writer."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _configure_sqlite(engine: Engine, *, file_based: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if file_based:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
