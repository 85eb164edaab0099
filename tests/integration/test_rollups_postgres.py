"""The rollup tables on the real PostgreSQL (upserts, integer hour SQL, ``ln`` bins): what
the writer and the label path keep equals the raw aggregate, and the traffic view reads them."""

from __future__ import annotations

from radvigil.store import Database, upgrade_database
from tests.unit.test_rollups import (
    check_rollups_match,
    check_traffic_reads_the_rollup,
    write_history,
)


def test_rollups_equal_the_raw_aggregate_on_postgres(pg_url: str) -> None:
    db = Database(pg_url)
    upgrade_database(db)
    last_hour = write_history(db, seed=1)
    check_rollups_match(db)
    check_traffic_reads_the_rollup(db, last_hour)
    db.dispose()
