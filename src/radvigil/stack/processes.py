"""Child processes of the loopback stack: a throwaway PostgreSQL cluster and supervised servers.

Each process binds 127.0.0.1 on a free port, logs to a file under the stack's root, and is
stopped by the stack (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from radvigil.errors import ConfigError, RadvigilError


class StackError(RadvigilError):
    """A process of the stack failed to start or stopped unexpectedly."""


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tool(name: str) -> str:
    """The full path of ``name`` on PATH, or a ConfigError saying what to install."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        raise ConfigError(f"{name} is not installed (Debian: apt-get install -y {name})")
    return path


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Service | None = None):
    """Poll ``check`` until it is true; StackError after ``timeout`` or when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.exited:
            raise StackError(
                f"{what}: process exited ({proc.returncode}); log {proc.log_path}:\n"
                + proc.log_tail()
            )
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    raise StackError(
        f"{what} not up within {timeout:.0f} s" + (f"; log {proc.log_path}" if proc else "")
    )


def http_ok(url: str, headers: dict[str, str] | None = None) -> Callable[[], bool]:
    return lambda: httpx.get(url, headers=headers, timeout=2).status_code == 200


class Service:
    """One supervised child process with its output in ``log_path``."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: dict[str, str]):
        self.name, self.command, self.log_path, self.env = name, list(command), log_path, env
        self.process: subprocess.Popen | None = None

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # our Ctrl-C goes to the stack, which stops us in order
            )
        return self

    @property
    def running(self) -> subprocess.Popen:
        """The started process (StackError before :meth:`start`)."""
        if self.process is None:
            raise StackError(f"{self.name} was never started")
        return self.process

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the log (for an error that names why a process died)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process and its children (its own session, so its group)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (graceful: in-flight requests finish, the writer flushes), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)


class PostgresCluster:
    """A private PostgreSQL cluster (``initdb``/``pg_ctl``) in ``root``, trust auth, loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        # initdb and postgres refuse to run as root; run them as the postgres user then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, databases: Sequence[str] = ()) -> None:
        for tool in ("initdb", "pg_ctl"):
            require_tool(tool)
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
            " -c fsync=off -c synchronous_commit=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            options,
            "start",
        )
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            for name in databases:
                conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*self.prefix, "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self.prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise StackError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
