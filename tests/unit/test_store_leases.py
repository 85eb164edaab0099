"""Leases on SQLite: one holder at a time, renewable by its holder, free once released."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from radvigil.store import Database, LeaseStore, upgrade_database


def _leases(tmp_path: Path) -> LeaseStore:
    db = Database(f"sqlite:///{tmp_path / 'leases.db'}")
    upgrade_database(db)
    return LeaseStore(db)


def test_one_holder_at_a_time(tmp_path: Path) -> None:
    leases = _leases(tmp_path)
    assert leases.claim("monitor:m", "a", 60)
    assert not leases.claim("monitor:m", "b", 60)
    assert leases.claim("monitor:m", "a", 60)  # the holder renews
    assert leases.holder("monitor:m") == "a"
    assert leases.claim("monitor:other", "b", 60)  # names are independent
    leases.release("monitor:m", "b")  # not b's to release
    assert leases.holder("monitor:m") == "a"
    leases.release("monitor:m", "a")
    assert leases.holder("monitor:m") is None
    assert leases.claim("monitor:m", "b", 60)


def test_an_expired_lease_can_be_taken(tmp_path: Path) -> None:
    leases = _leases(tmp_path)
    assert leases.claim("monitor:m", "crashed", 0.05)
    time.sleep(0.1)
    assert leases.holder("monitor:m") is None
    assert leases.claim("monitor:m", "b", 60)
    assert not leases.claim("monitor:m", "crashed", 60)


def test_racing_claims_have_one_winner(tmp_path: Path) -> None:
    leases = _leases(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: leases.claim("monitor:m", f"w{i}", 60), range(8)))
    assert sum(won) == 1
