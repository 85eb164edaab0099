"""Integration fixtures: a fresh database on the real PostgreSQL, and throwaway clusters.

The shared server (``RADVIGIL_TEST_POSTGRES_URL``, default ``postgres@127.0.0.1:5432/test``) is
never stopped: each test gets its own database there, dropped afterwards. Outage tests start a
private cluster with ``initdb``/``pg_ctl`` on a free port and may kill that one at will.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from radvigil.stack.processes import free_port

ADMIN_URL = os.environ.get(
    "RADVIGIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); start it or point "
            "RADVIGIL_TEST_POSTGRES_URL at a server where this user may CREATE DATABASE",
            pytrace=False,
        )


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """URL of a new, empty database on the shared PostgreSQL, dropped after the test."""
    name = f"radvigil_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user, host = base.get("user", "postgres"), base.get("host", "127.0.0.1")
    yield f"postgresql+psycopg://{user}@{host}:{base.get('port', 5432)}/{name}"
    with _admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class Cluster:
    """A private PostgreSQL cluster in a temp folder; ``stop()`` kills it like a crash."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        # initdb and postgres refuse to run as root; run them as the postgres user then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self.prefix, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{' '.join(command)} failed: {result.stderr}{tail}", pytrace=False)


@pytest.fixture()
def pg_cluster() -> Iterator[Cluster]:
    """A started throwaway cluster (needs initdb and pg_ctl on PATH), removed afterwards."""
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH; the outage test needs a PostgreSQL install")
    root = Path(tempfile.mkdtemp(prefix="radvigil-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = Cluster(root)
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            [*cluster.prefix, "pg_ctl", "-D", str(cluster.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
