"""The multi-replica topology on one machine: PostgreSQL, an MLflow server, N service replicas,
the monitoring worker and nginx in front, all on 127.0.0.1 (``radvigil stack up``, the tests
and ``bench/stack_load.py``).

The processes are the production ones (``radvigil serve``, ``mlflow server``, Debian's nginx),
configured only through the environment variables a container would get; each replica has its
own home (model cache and prediction spool) and shares the database and the registry.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from radvigil.stack import nginx
from radvigil.stack.processes import (
    PostgresCluster,
    Service,
    StackError,
    free_port,
    http_ok,
    require_tool,
    wait_until,
)
from radvigil.store import Database, upgrade_database

# Registry calls of the stack's processes may wait this long (radvigil's default is 10 s, which a
# busy machine running the whole stack can exceed while the MLflow server answers another call).
HTTP_TIMEOUT = "60"


@dataclass
class StackConfig:
    """What to run: how many replicas and workers, and how fast replicas follow the registry."""

    replicas: int = 2
    workers: int = 1
    poll_seconds: float = 2.0
    monitor_every: float = 10.0
    ort_threads: int = 1
    rate_limit_store: str = "database"
    model_name: str = "chest-pneumonia"
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    """Start with :meth:`start` (or ``with Stack(...)``); the replicas need a champion to be
    ready, so :meth:`start` stops after the registry is up when ``serve=False`` and
    :meth:`start_serving` brings up replicas, workers and nginx later."""

    def __init__(self, config: StackConfig | None = None, root: Path | None = None) -> None:
        self.config = config or StackConfig()
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="radvigil-stack-"))
        self.root.chmod(0o755)  # nginx's workers (nobody, when started by root) read under it
        self.postgres = PostgresCluster(self.root / "postgres")
        self.mlflow: Service | None = None
        self.replicas: list[Service | None] = []
        self.replica_ports: list[int] = []
        self.workers: list[Service] = []
        self.nginx: Service | None = None
        self.nginx_port = 0  # picked when nginx starts (see _start_nginx)
        self.mlflow_port = free_port()

    # --- addresses -------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.postgres.url("radvigil")

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def url(self) -> str:
        """nginx, the one address clients use."""
        return f"http://127.0.0.1:{self.nginx_port}"

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.replica_ports[index]}"

    def env(self, home: Path) -> dict[str, str]:
        """The environment every radvigil process of the stack gets (as a container would)."""
        cfg = self.config
        return {
            **os.environ,
            "RADVIGIL_HOME": str(home),
            "RADVIGIL_DATABASE_URL": self.database_url,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_ENABLE_TELEMETRY": "false",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": HTTP_TIMEOUT,
            "RADVIGIL_MODEL_NAME": cfg.model_name,
            "RADVIGIL_MODEL_POLL_SECONDS": str(cfg.poll_seconds),
            "RADVIGIL_MONITOR_INTERVAL_SECONDS": "0",  # the worker monitors, not the replicas
            "RADVIGIL_RATE_LIMIT_STORE": cfg.rate_limit_store,
            "RADVIGIL_ORT_THREADS": str(cfg.ort_threads),
            **cfg.extra_env,
        }

    # --- life cycle ------------------------------------------------------------------------

    def start_backends(self) -> None:
        """PostgreSQL (databases radvigil and mlflow), the MLflow server, and the schema."""
        self.postgres.start(databases=("radvigil", "mlflow"))
        artifacts = self.root / "mlartifacts"
        self.mlflow = Service(
            "mlflow",
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                *("--host", "127.0.0.1", "--port", str(self.mlflow_port)),
                *("--backend-store-uri", self.postgres.url("mlflow")),
                *("--artifacts-destination", str(artifacts)),
                *("--workers", "1"),
            ],
            self.root / "mlflow.log",
            {**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false"},
        ).start()
        db = Database(self.database_url)  # the schema, while the MLflow server starts
        try:
            upgrade_database(db)
        finally:
            db.dispose()
        wait_until(http_ok(f"{self.tracking_uri}/health"), 300, "mlflow server", self.mlflow)
        # The server's first API call initialises its store (seconds on a busy machine).
        httpx.get(
            f"{self.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=120
        )

    def start_serving(self) -> None:
        """The replicas (waiting until each answers /health), the workers, then nginx."""
        require_tool("nginx")
        self.replica_ports = [free_port() for _ in range(self.config.replicas)]
        self.replicas = [None] * self.config.replicas
        for index in range(self.config.replicas):
            self.start_replica(index, wait=False)
        for index in range(self.config.replicas):
            self.wait_replica(index)
        for index in range(self.config.workers):
            self.workers.append(self._worker(index).start())
        self._start_nginx()

    def start(self) -> Stack:
        self.start_backends()
        self.start_serving()
        return self

    def start_replica(self, index: int, *, wait: bool = True) -> Service:
        home = self.root / f"replica-{index}"
        home.mkdir(exist_ok=True)
        port = self.replica_ports[index]
        service = Service(
            f"replica-{index}",
            [self._cli(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            self.root / f"replica-{index}.log",
            self.env(home),
        ).start()
        self.replicas[index] = service
        if wait:
            self.wait_replica(index)
        return service

    def wait_replica(self, index: int, timeout: float = 180) -> None:
        service = self.replicas[index]
        if service is None:
            raise StackError(f"replica {index} is not running")
        wait_until(http_ok(f"{self.replica_url(index)}/health"), timeout, service.name, service)

    def stop_replica(self, index: int, *, kill: bool = False) -> None:
        """Stop one replica: SIGTERM (graceful) by default, SIGKILL with ``kill``."""
        service = self.replicas[index]
        if service is None:
            return
        if kill:
            service.signal(signal.SIGKILL)
            service.running.wait(timeout=10)
        else:
            service.stop()

    def stop(self) -> None:
        """Everything, in reverse order of dependencies; the root is removed if we made it."""
        for service in [self.nginx, *self.workers, *self.replicas, self.mlflow]:
            if service is not None:
                service.stop()
        self.postgres.stop()
        if self._own_root and not os.environ.get("RADVIGIL_STACK_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- parts -----------------------------------------------------------------------------

    def _cli(self) -> str:
        """The radvigil console script of this interpreter's environment."""
        script = Path(sys.executable).parent / "radvigil"
        return str(script) if script.exists() else require_tool("radvigil")

    def run_cli(self, *args: str) -> None:
        """Run one ``radvigil`` command against the stack's database and registry."""
        self._radvigil(*args)

    def admin_key(self, name: str = "stack-admin") -> str:
        """Create an admin API key in the stack's database and return its token."""
        from radvigil.store import KeyStore

        db = Database(self.database_url)
        try:
            token, _ = KeyStore(db).create(name, "admin", rate_limit=100_000)
        finally:
            db.dispose()
        return token

    def _radvigil(self, *args: str) -> None:
        home = self.root / "admin"
        home.mkdir(exist_ok=True)
        service = Service(
            "radvigil " + " ".join(args),
            [self._cli(), *args],
            self.root / "admin.log",
            self.env(home),
        )
        service.start()
        code = service.running.wait(timeout=300)
        if code != 0:
            raise StackError(f"radvigil {' '.join(args)} failed ({code}); log {service.log_path}")

    def _worker(self, index: int) -> Service:
        home = self.root / f"worker-{index}"
        home.mkdir(exist_ok=True)
        every = f"{self.config.monitor_every:g}"
        loop = f"while true; do {self._cli()} monitor run --no-reports; sleep {every}; done"
        return Service(
            f"worker-{index}",
            ["sh", "-c", loop],
            self.root / f"worker-{index}.log",
            self.env(home),
        )

    def set_upstreams(self, indices: list[int]) -> None:
        """Balance over these replicas only: rewrite nginx's config and reload it (graceful)."""
        root = self.root / "nginx"
        nginx.write_config(root, self.nginx_port, [self.replica_ports[i] for i in indices])
        if self.nginx is None:
            raise StackError("nginx is not running")
        self.nginx.running.send_signal(signal.SIGHUP)  # the master only: it re-reads the config
        time.sleep(1.0)  # new workers take over; old ones finish their requests
        wait_until(http_ok(f"{self.url}/health"), 30, "nginx after reload", self.nginx)

    def _start_nginx(self, tries: int = 3) -> None:
        """nginx on a port picked now, picked again if something took it before nginx bound it.

        A port free when picked can be taken before nginx binds it (an outgoing connection's
        ephemeral port comes from the same range); nginx then exits with EADDRINUSE.
        """
        root = self.root / "nginx"
        root.mkdir(exist_ok=True)
        root.chmod(0o755)
        for attempt in range(1, tries + 1):
            self.nginx_port = free_port()
            conf = nginx.write_config(root, self.nginx_port, self.replica_ports)
            self.nginx = Service(
                "nginx",
                [require_tool("nginx"), "-p", str(root), "-c", str(conf), "-g", "daemon off;"],
                self.root / "nginx.log",
                dict(os.environ),
            ).start()
            try:
                wait_until(http_ok(f"{self.url}/health"), 30, "nginx", self.nginx)
                return
            except StackError as err:
                if attempt == tries or "Address already in use" not in str(err):
                    raise
