"""`make deploy-check`: build the radvigil image air-gapped and run the Compose topology for real.

Steps, each timed and printed:
  1. base image: Debian bookworm by debootstrap into deploy/.airgap/rootfs, then `podman import`;
  2. wheelhouse: `pip download --require-hashes` of deploy/docker/requirements.lock (every wheel
     checked against its sha256) plus radvigil's own wheel, into deploy/.airgap/wheelhouse;
  3. image: `podman build` of deploy/docker/Dockerfile (`pip install --no-index --require-hashes`);
  4. topology: the services of deploy/compose.yaml started with `podman run --network host`, each
     with its exact image, entry point, command, environment (compose.env.example as .env),
     secrets (made by deploy/secrets/make-secrets.sh), volumes and hardening flags. Host
     networking has no service names, so the addresses are mapped: postgres:5432 -> a throwaway
     PostgreSQL on 127.0.0.1 (host binaries, initialised by deploy/postgres/init-roles.sh; the
     postgres image cannot be pulled here), mlflow:5000 and api-N:8000 -> free loopback ports;
     nginx is Debian's, running deploy/nginx/radvigil.conf with the same mapping and a
     certificate from deploy/certs/make-self-signed.sh;
  5. through nginx (HTTPS): a prediction, a promote and a rollback, followed by both replicas;
     and the API container started without its audit key must refuse, naming RADVIGIL_AUDIT_KEY.
Everything it started (containers, volumes, PostgreSQL, nginx) is removed at the end.

    python scripts/deploy_check.py            # all of the above
    python scripts/deploy_check.py lock       # rewrite deploy/docker/requirements.lock
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from radvigil.stack.nginx import NEXT_UPSTREAM  # noqa: E402
from radvigil.stack.processes import free_port, require_tool, wait_until  # noqa: E402
from radvigil.stack.topology import HTTP_TIMEOUT  # noqa: E402

DEPLOY = REPO / "deploy"
AIRGAP = DEPLOY / ".airgap"
ROOTFS, WHEELHOUSE = AIRGAP / "rootfs", AIRGAP / "wheelhouse"
LOCK = DEPLOY / "docker" / "requirements.lock"
BASE_IMAGE = "localhost/radvigil-base:bookworm"
IMAGE = "localhost/radvigil:0.1.0"
BASE_PACKAGES = "python3,python3-venv,ca-certificates,libgomp1"
PREFIX = "rvcheck"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RADVIGIL_SERVICES = ("mlflow", "migrate", "api-1", "api-2", "monitor")
IMAGES = sorted((REPO / "data" / "bundled" / "kermany" / "test").glob("*/*.jpg"))


def log(message: str) -> None:
    print(f"[deploy-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    return subprocess.run(args, **kwargs)


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run("podman", "--runtime", "runc", *args, **kwargs)


# --- 1-3: the air-gapped build ----------------------------------------------------------------


def write_lock() -> None:
    """requirements.lock from a wheelhouse `pip wheel -w` filled (radvigil's own wheel left out)."""
    entries = []
    for wheel in sorted(WHEELHOUSE.glob("*.whl"), key=lambda p: p.name.lower()):
        name, version = wheel.name.split("-")[:2]
        if name != "radvigil":
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            entries.append(
                f"{name.replace('_', '-').lower()}=={version} \\\n    --hash=sha256:{digest}"
            )
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    LOCK.write_text("\n".join([*header, *entries]) + "\n")
    log(f"{LOCK.relative_to(REPO)}: {len(entries)} wheels")


def build() -> dict[str, float]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    if not (ROOTFS / "usr" / "bin" / "python3").exists():
        shutil.rmtree(ROOTFS, ignore_errors=True)
        run(
            require_tool("debootstrap"),
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            "bookworm",
            str(ROOTFS),
            "http://deb.debian.org/debian",
        )
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
        ):
            shutil.rmtree(ROOTFS / junk, ignore_errors=True)
    timings["debootstrap"] = time.monotonic() - started
    started = time.monotonic()
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        tar = subprocess.Popen(["tar", "-C", str(ROOTFS), "-c", "."], stdout=subprocess.PIPE)
        podman(
            "import",
            "--change",
            'CMD ["/bin/sh"]',
            "-",
            BASE_IMAGE,
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        tar.wait()
    timings["podman import"] = time.monotonic() - started
    started = time.monotonic()
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(
        *pip,
        "download",
        "--quiet",
        "--require-hashes",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(WHEELHOUSE),
        "-r",
        str(LOCK),
    )
    for old in WHEELHOUSE.glob("radvigil-*.whl"):
        old.unlink()
    run(*pip, "wheel", "--quiet", "--no-deps", "-w", str(WHEELHOUSE), str(REPO))
    timings["wheelhouse"] = time.monotonic() - started
    started = time.monotonic()
    podman(
        "build",
        "--network",
        "host",
        "--quiet",
        "-f",
        str(DEPLOY / "docker" / "Dockerfile"),
        "--ignorefile",
        str(DEPLOY / "docker" / "Dockerfile.dockerignore"),
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-t",
        IMAGE,
        str(REPO),
        stdout=subprocess.DEVNULL,
    )
    timings["podman build"] = time.monotonic() - started
    return timings


def image_sizes() -> dict[str, str]:
    sizes = {}
    for image in (BASE_IMAGE, IMAGE):
        out = podman(
            "image", "inspect", "--format", "{{.Size}}", image, capture_output=True, text=True
        ).stdout.strip()
        sizes[image] = f"{int(out) / 1e9:.2f} GB"
    sizes["wheelhouse"] = f"{sum(p.stat().st_size for p in WHEELHOUSE.glob('*.whl')) / 1e9:.2f} GB"
    return sizes


# --- 4: the topology -------------------------------------------------------------------------


def substitute(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} against ``env``."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise SystemExit(f"compose.yaml needs {name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


class Topology:
    """The compose services as podman containers on the host network, and what they need."""

    def __init__(self, root: Path, stack: ExitStack) -> None:
        self.root, self.stack = root, stack
        self.compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
        self.dotenv = dict(
            line.split("=", 1)
            for line in (DEPLOY / "compose.env.example").read_text().splitlines()
            if line and not line.startswith("#")
        )
        self.dotenv["RADVIGIL_IMAGE"] = IMAGE
        self.ports = {name: free_port() for name in ("postgres", "mlflow", "api-1", "api-2")}
        self.https_port, self.http_port = free_port(), free_port()
        self.secrets = root / "secrets"
        self.containers: list[str] = []
        self.runs = 0
        self.volumes: set[str] = set()

    def address(self, text: str) -> str:
        """Compose's service addresses -> this host's loopback ports (no DNS on --network host)."""
        text = text.replace("mlflow:5000", f"127.0.0.1:{self.ports['mlflow']}")
        text = text.replace("localhost:5000", f"localhost:{self.ports['mlflow']}")
        return text.replace("127.0.0.1:5000", f"127.0.0.1:{self.ports['mlflow']}")

    def make_secrets(self) -> None:
        self.secrets.mkdir()
        shutil.copy(DEPLOY / "secrets" / "make-secrets.sh", self.secrets)
        env = {
            **os.environ,
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(self.ports["postgres"]),
        }
        run("sh", str(self.secrets / "make-secrets.sh"), env=env)

    def start_postgres(self) -> None:
        """A throwaway cluster, initialised the way the postgres image runs init-roles.sh."""
        data, sockets = self.root / "pgdata", self.root / "pgsock"
        sockets.mkdir()
        user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        for path in (self.root, data.parent, sockets):
            path.chmod(0o777)
        pwfile = self.root / "pwfile"  # initdb runs as postgres; the secrets folder is 0700
        shutil.copy(self.secrets / "postgres_password", pwfile)
        pwfile.chmod(0o644)
        run(
            *user,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            stdout=subprocess.DEVNULL,
        )
        run(
            *user,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-o",
            f"-p {self.ports['postgres']} -k {sockets} -h 127.0.0.1",
            "start",
            stdout=subprocess.DEVNULL,
        )
        self.stack.callback(
            run,
            *user,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-m",
            "immediate",
            "stop",
            check=False,
            stdout=subprocess.DEVNULL,
        )
        service = self.compose["services"]["postgres"]
        env = {**os.environ, "PGHOST": str(sockets), "PGPORT": str(self.ports["postgres"])}
        for key, value in service["environment"].items():  # /run/secrets/x -> our secrets/x
            env[key] = value.replace("/run/secrets", str(self.secrets))
        run("sh", str(DEPLOY / "postgres" / "init-roles.sh"), env=env, stdout=subprocess.DEVNULL)

    def podman_args(
        self, name: str, extra_env: dict[str, str] | None = None, drop_secrets: tuple[str, ...] = ()
    ) -> list[str]:
        """`podman run` arguments for compose service ``name``, its own settings throughout."""
        service = self.compose["services"][name]
        self.runs += 1
        args = ["--network", "host", "--name", f"{PREFIX}-{name}-{self.runs}"]
        if service.get("read_only"):
            args.append("--read-only")
        args += [f"--tmpfs={t}" for t in service.get("tmpfs", [])]
        args += [f"--security-opt={o}" for o in service.get("security_opt", [])]
        args += [f"--cap-drop={c}" for c in service.get("cap_drop", [])]
        env = {
            k: self.address(substitute(str(v), self.dotenv))
            for k, v in (service.get("environment") or {}).items()
        }
        if name.startswith("api-"):
            env |= {"RADVIGIL_HOST": "127.0.0.1", "RADVIGIL_PORT": str(self.ports[name])}
        if "MLFLOW_TRACKING_URI" in env:  # 2 cores shared by many jobs: MLflow answers slowly
            env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = HTTP_TIMEOUT
        env |= extra_env or {}
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        for secret in service.get("secrets", []):
            if secret not in drop_secrets:
                args += ["-v", f"{self.secrets / secret}:/run/secrets/{secret}:ro"]
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                args += ["-v", f"{(DEPLOY / source).resolve()}:{target}:ro"]
            else:
                self.volumes.add(f"{PREFIX}-{source}")
                args += ["-v", f"{PREFIX}-{source}:{target}"]
        if service.get("entrypoint"):
            args += ["--entrypoint", json.dumps(service["entrypoint"])]
        image = substitute(service["image"], self.dotenv)
        command = [self.address(substitute(str(c), self.dotenv)) for c in service["command"]]
        if name == "mlflow":
            command = [
                f"--port={self.ports['mlflow']}" if c == "--port=5000" else c for c in command
            ]
        return [*args, image, *command]

    def start(self, name: str, **kwargs) -> str:
        args = self.podman_args(name, **kwargs)
        self.containers.append(args[args.index("--name") + 1])
        podman("run", "-d", *args, stdout=subprocess.DEVNULL)
        return self.containers[-1]

    def once(self, name: str, *command: str, **kwargs) -> subprocess.CompletedProcess:
        """Run service ``name``'s container once with ``command`` (compose's `run --rm`)."""
        args = self.podman_args(name, **kwargs)
        if command:
            image_at = args.index(substitute(self.compose["services"][name]["image"], self.dotenv))
            args = [*args[: image_at + 1], *command]
        return podman("run", "--rm", *args, capture_output=True, text=True, check=False)

    def cleanup(self) -> None:
        for container in self.containers:
            podman("rm", "-f", "-t", "5", container, check=False, capture_output=True)
        for volume in self.volumes:
            podman("volume", "rm", "-f", volume, check=False, capture_output=True)

    def logs(self, container: str) -> str:
        result = podman("logs", container, capture_output=True, text=True, check=False)
        return (result.stdout + result.stderr)[-3000:]

    def start_nginx(self) -> None:
        """Debian's nginx running the shipped server blocks, addresses mapped to loopback."""
        certs = self.root / "certs"
        certs.mkdir()
        shutil.copy(DEPLOY / "certs" / "make-self-signed.sh", certs)
        run("sh", str(certs / "make-self-signed.sh"), "localhost", capture_output=True)
        shipped = (DEPLOY / "nginx" / "radvigil.conf").read_text()
        assert NEXT_UPSTREAM in shipped, "the shipped retry policy differs from the stack's"
        conf = (
            shipped.replace("api-1:8000", f"127.0.0.1:{self.ports['api-1']}")
            .replace("api-2:8000", f"127.0.0.1:{self.ports['api-2']}")
            .replace("listen 8080;", f"listen 127.0.0.1:{self.http_port};")
            .replace("listen 8443 ssl", f"listen 127.0.0.1:{self.https_port} ssl")
            .replace("/etc/nginx/certs", str(certs))
        )
        ngx = self.root / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (ngx / "tmp" / sub).mkdir(parents=True)
            (ngx / "tmp" / sub).chmod(0o777)
        (ngx / "radvigil.conf").write_text(conf)
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        temp = "".join(
            f"    {s}_temp_path {ngx}/tmp/{s.split('_')[0]};\n"
            for s in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        temp = temp.replace("tmp/client", "tmp/body")
        (ngx / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {ngx}/nginx.pid;\nerror_log {ngx}/error.log warn;\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n    access_log {ngx}/access.log;\n"
            f"{temp}    include {ngx}/radvigil.conf;\n}}\n"
        )
        nginx = require_tool("nginx")
        run(nginx, "-t", "-q", "-c", str(ngx / "nginx.conf"), "-e", str(ngx / "error.log"))
        run(nginx, "-c", str(ngx / "nginx.conf"), "-e", str(ngx / "error.log"))
        self.stack.callback(
            run,
            nginx,
            "-c",
            str(ngx / "nginx.conf"),
            "-e",
            str(ngx / "error.log"),
            "-s",
            "stop",
            check=False,
        )
        self.ca = certs / "tls.crt"


@contextmanager
def topology() -> Iterator[Topology]:
    with tempfile.TemporaryDirectory(prefix="deploy-check-") as tmp, ExitStack() as stack:
        top = Topology(Path(tmp), stack)
        stack.callback(top.cleanup)
        yield top


def register_models(top: Topology) -> tuple[str, str]:
    """Two tiny versions trained here, logged to the containers' MLflow as its admin, gated by
    radvigil's signed records and placed in its own deployment state (what serving trusts)."""
    from tests.helpers import make_home, tiny_config

    from radvigil.loop.deployment import Deployments
    from radvigil.loop.training import run_training
    from radvigil.store import AuditLog, Database

    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = HTTP_TIMEOUT  # as the stack test's trainer
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = (top.secrets / "mlflow_admin_password").read_text()
    home = make_home(top.root / "trainer", tracking_uri=f"http://127.0.0.1:{top.ports['mlflow']}")
    versions = []
    for seed in (7, 8):
        cfg = tiny_config(epochs=1, max_train_images=64, seed=seed)
        versions.append(run_training(cfg, home.data_version, home.catalog, home.registry))
    name = versions[0].name
    v1, v2 = (str(v.version) for v in versions)
    # The replicas' own database and audit key (the same secret files the containers mount).
    db = Database((top.secrets / "database_url").read_text().strip())
    audit = AuditLog(db, secret=(top.secrets / "audit_key").read_text().strip())
    radvigil = Deployments(db, home.registry, audit)
    # A passing verdict as `radvigil gate` signs it (gating itself is tested in
    # tests/integration/test_evaluate_gate.py); the signature is real, made with the audit key.
    for version in (v1, v2):
        radvigil.sign(home.registry.load(f"{name}/{version}"), "passed", "deploy-check", "ci")
    radvigil.set_alias(name, "champion", v1, actor="deploy-check", reason="first champion")
    radvigil.set_alias(name, "challenger", v2, actor="deploy-check", reason="challenger")
    return v1, v2


def check(top: Topology) -> None:
    timings: dict[str, float] = {}
    top.make_secrets()
    started = time.monotonic()
    top.start_postgres()
    mlflow = top.start("mlflow")
    mlflow_url = f"http://127.0.0.1:{top.ports['mlflow']}"
    try:
        wait_until(lambda: _ok(f"{mlflow_url}/health"), 180, "MLflow /health")
    except Exception:
        log(top.logs(mlflow))
        raise
    anonymous = httpx.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/search", timeout=10)
    log(f"MLflow without credentials: HTTP {anonymous.status_code}")
    assert anonymous.status_code == 401, anonymous.text
    migrate = top.once("migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    timings["postgres + mlflow + migrate"] = time.monotonic() - started
    started = time.monotonic()
    v1, v2 = register_models(top)
    timings["train + register 2 tiny versions (host)"] = time.monotonic() - started

    refused = top.once("api-1", "serve", drop_secrets=("audit_key",))
    said = (refused.stdout + refused.stderr).strip().splitlines()
    log(f"api without its audit key: exit {refused.returncode}: {said[-1] if said else ''}")
    assert refused.returncode != 0 and "RADVIGIL_AUDIT_KEY" in refused.stdout + refused.stderr

    started = time.monotonic()
    replicas = [top.start("api-1"), top.start("api-2")]
    top.start("monitor")
    for name, container in zip(("api-1", "api-2"), replicas, strict=True):
        url = f"http://127.0.0.1:{top.ports[name]}/health"
        try:
            wait_until(lambda url=url: _ok(url), 240, f"{name} /health")
        except Exception:
            log(top.logs(container))
            raise
    top.start_nginx()
    timings["api x2 + monitor + nginx up"] = time.monotonic() - started

    created = top.once(
        "api-1",
        "keys",
        "create",
        "--name",
        "deploy-check",
        "--role",
        "admin",
        "--rate-limit",
        "100000",
    )
    assert created.returncode == 0, created.stdout + created.stderr
    key = re.search(r"rvk_\S+", created.stdout).group(0)
    base = f"https://localhost:{top.https_port}"
    with httpx.Client(
        base_url=base, verify=str(top.ca), headers={"X-API-Key": key}, timeout=60
    ) as client:
        redirect = httpx.get(f"http://127.0.0.1:{top.http_port}/v1/model", timeout=10)
        assert redirect.status_code == 308, redirect.status_code
        assert "nginx/" not in client.get("/nope").headers.get("server", "")
        models = [client.get("/v1/model").json()["champion"]["version"] for _ in range(4)]
        assert set(models) == {v1}, models
        image = IMAGES[0]
        predicted = client.post(
            "/v1/predict", files={"file": (image.name, image.read_bytes(), "image/jpeg")}
        )
        assert predicted.status_code == 200, predicted.text
        body = predicted.json()
        log(
            f"predict via nginx: HTTP 200, version {body.get('model_version')}, "
            f"request {body.get('request_id')}"
        )
        for action, expected in (("promote", v2), ("rollback", v1)):
            response = client.post(
                f"/v1/admin/rollout/{action}", json={"reason": f"deploy-check {action}"}
            )
            assert response.status_code == 200, response.text
            followed = time.monotonic()
            for name in ("api-1", "api-2"):
                url = f"http://127.0.0.1:{top.ports[name]}/v1/model"
                wait_until(
                    lambda url=url, expected=expected: _champion(url, key) == expected,
                    60,
                    f"{name} serving {expected} after {action}",
                )
            seen = {client.get("/v1/model").json()["champion"]["version"] for _ in range(4)}
            assert seen == {expected}, seen
            log(
                f"{action} via nginx: HTTP 200; both replicas serve version {expected} "
                f"({time.monotonic() - followed:.1f} s)"
            )
    for name, seconds in timings.items():
        log(f"time  {name}: {seconds:.0f} s")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _champion(url: str, key: str) -> str | None:
    try:
        return httpx.get(url, headers={"X-API-Key": key}, timeout=5).json()["champion"]["version"]
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds the clean-up stack


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    os.environ.setdefault("CONTAINERS_CONF", str(DEPLOY / "podman" / "containers.conf"))
    if sys.argv[1:] == ["lock"]:
        write_lock()
        return
    for tool in ("podman", "runc", "nginx", "openssl"):
        require_tool(tool)
    started = time.monotonic()
    timings = build()
    for name, seconds in timings.items():
        log(f"time  {name}: {seconds:.0f} s")
    for name, size in image_sizes().items():
        log(f"size  {name}: {size}")
    with topology() as top:
        check(top)
    log(f"deploy-check passed in {time.monotonic() - started:.0f} s; everything it started is gone")


if __name__ == "__main__":
    main()
