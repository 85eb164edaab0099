"""Rate limits shared through PostgreSQL: two limiters (as in two replicas) draw on one bucket."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from radvigil.errors import ConfigError
from radvigil.service.errors import ApiError
from radvigil.service.security import RateLimiter
from radvigil.store import Database, KeyStore, upgrade_database
from radvigil.store.ratelimits import DatabaseBuckets

pytestmark = pytest.mark.integration


def test_two_limiters_share_one_bucket(pg_url: str) -> None:
    db = Database(pg_url)
    upgrade_database(db)
    _, key = KeyStore(db).create("shared", "service", rate_limit=10)
    replicas = [RateLimiter(DatabaseBuckets(Database(pg_url))) for _ in range(2)]

    def take(i: int) -> int | str:
        try:
            replicas[i % 2].take(key)
            return 200
        except ApiError as exc:
            return exc.headers["Retry-After"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(take, range(30)))
    granted = outcomes.count(200)
    assert 10 <= granted <= 11, outcomes  # the bucket refills 1 token per 6 s meanwhile
    assert all(o == 200 or int(o) >= 1 for o in outcomes)
    for limiter in replicas:
        limiter.buckets.db.dispose()
    db.dispose()


def test_shared_buckets_refuse_sqlite(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        DatabaseBuckets(Database(f"sqlite:///{tmp_path / 'x.db'}"))
