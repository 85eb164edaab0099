"""Token buckets in PostgreSQL, so every service replica draws on the same rate limit.

One row per bucket (a key's name, or whatever the limiter keys on). Taking tokens is one atomic
``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` that refills by the time elapsed on the
*database's* clock (replicas' clocks never disagree with it) and takes ``cost`` only when enough
is there, so two replicas can never both spend the last token. PostgreSQL only: SQLite is one
machine's embedded store, where the in-memory limiter already sees every request.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from radvigil.errors import ConfigError
from radvigil.store.db import Database, store_error

_LEVEL = (
    "LEAST(:capacity, b.tokens + EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at) * :refill)"
)
_TAKE = text(
    f"""
    INSERT INTO rate_buckets AS b (name, tokens, updated_at)
    VALUES (:name, :capacity - :cost, clock_timestamp())
    ON CONFLICT (name) DO UPDATE
        SET tokens = {_LEVEL} - :cost, updated_at = clock_timestamp()
        WHERE {_LEVEL} >= :cost
    RETURNING b.tokens
    """
)
_LEVEL_NOW = text(f"SELECT {_LEVEL} FROM rate_buckets AS b WHERE b.name = :name")


class DatabaseBuckets:
    """Shared token buckets: :meth:`take` returns None when granted, else seconds to wait."""

    def __init__(self, db: Database) -> None:
        if db.url.get_backend_name() != "postgresql":
            raise ConfigError(
                "RADVIGIL_RATE_LIMIT_STORE=database needs PostgreSQL (RADVIGIL_DATABASE_URL); "
                "on SQLite keep the default, memory"
            )
        self.db = db

    def take(self, name: str, capacity: float, refill_per_s: float, cost: float) -> float | None:
        params = {"name": name, "capacity": capacity, "refill": refill_per_s, "cost": cost}
        try:
            with self.db.engine.begin() as conn:
                if conn.execute(_TAKE, params).first() is not None:
                    return None
                level = conn.execute(_LEVEL_NOW, params).scalar_one()
        except SQLAlchemyError as exc:
            raise store_error(exc, "taking a rate-limit token") from exc
        return max(0.0, (cost - float(level)) / refill_per_s)
