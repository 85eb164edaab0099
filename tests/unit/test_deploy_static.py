"""Static checks of deploy/: Compose, kustomize, nginx, Prometheus, Grafana, the Dockerfile.

Fast (seconds): the files are parsed and rendered with the real ``kubectl kustomize``, and the
shipped nginx config passes the real ``nginx -t``. The scanners (terraform, checkov, hadolint)
run in tests/integration/test_deploy_scanners.py; the image is built and the topology run by
``make deploy-check`` (scripts/deploy_check.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from radvigil.cli import COMMANDS, load_command
from radvigil.service.metrics import ServiceMetrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod", "ray")
RADVIGIL_SERVICES = ("api-1", "api-2", "monitor", "migrate")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH; deploy/ cannot be validated without it")
    return path


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _render(kustomization: str) -> list[dict]:
    result = subprocess.run(
        [_tool("kubectl"), "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _command(path: tuple[str, ...]) -> object:
    """The Click command at ``path`` (the CLI imports its commands lazily, so load them)."""
    command = load_command(path[0])
    for name in path[1:]:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _cli_commands() -> set[tuple[str, ...]]:
    """Every command path of the radvigil CLI, e.g. ('monitor', 'run')."""

    def walk(command: object, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        found = {prefix}
        if hasattr(command, "commands"):  # typer's groups are not click.Group subclasses
            for name, sub in command.commands.items():
                found |= walk(sub, (*prefix, name))
        return found

    return set().union(*(walk(load_command(name), (name,)) for name in COMMANDS))


def _assert_cli(args: list[str], where: str) -> None:
    words = [a for a in args if not a.startswith("-")]
    commands = _cli_commands()
    matches = [c for c in commands if tuple(words[: len(c)]) == c]
    assert matches, f"{where}: `radvigil {' '.join(args)}` is not a radvigil command"
    path = max(matches, key=len)
    command = _command(path)
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    options |= {opt for p in command.params for opt in getattr(p, "secondary_opts", [])}
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in options, f"{where}: {arg} is not an option of {path}"


# --- Compose -------------------------------------------------------------------------------


def test_compose_parses_and_has_the_topology() -> None:
    services = _compose()["services"]
    topology = {"api-1", "api-2", "nginx", "postgres", "mlflow", "monitor", "prometheus", "grafana"}
    assert topology <= set(services)
    for name in ("api-1", "api-2", "monitor", "migrate", "mlflow"):
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
    assert services["mlflow"]["entrypoint"] == ["radvigil-entrypoint", "mlflow"]
    assert services["api-1"]["healthcheck"]["test"][-1].endswith("/health', timeout=3)")


def test_compose_references_only_files_that_exist() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file(), f"{name}: no Dockerfile"


def test_compose_holds_no_secret_values() -> None:
    """Every password and key is a file under ./secrets mounted at /run/secrets, read via _FILE."""
    compose = _compose()
    secretive = re.compile(r"(?i)password|secret|_key\b|token|database_url|store_uri")
    for name, service in compose["services"].items():
        mounted = set(service.get("secrets", []))
        for var, value in (service.get("environment") or {}).items():
            if secretive.search(var):
                assert var.endswith("_FILE"), f"{name}: {var} holds a secret value"
                assert str(value).startswith("/run/secrets/"), f"{name}: {var}"
                assert str(value).removeprefix("/run/secrets/") in mounted, f"{name}: {var}"
            assert "@" not in str(value), f"{name}: {var} holds credentials in a URL"
    for secret in compose["secrets"].values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/"), secret
    ignored = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert ignored[0] == "*" and "!make-secrets.sh" in ignored
    assert "${" not in (DEPLOY / "compose.env.example").read_text()


def test_compose_radvigil_processes_get_audit_key_database_and_review_images() -> None:
    services = _compose()["services"]
    for name in RADVIGIL_SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["RADVIGIL_AUDIT_KEY_FILE"] == "/run/secrets/audit_key", name
        assert env["RADVIGIL_DATABASE_URL_FILE"] == "/run/secrets/database_url", name
        assert env["RADVIGIL_STORE_REVIEW_IMAGES"] == "true", name
        assert env["MLFLOW_TRACKING_PASSWORD_FILE"] == "/run/secrets/mlflow_admin_password"
        assert {"audit_key", "database_url", "mlflow_admin_password"} <= set(service["secrets"])
        assert env["RADVIGIL_ENV"] == "production"


def test_mlflow_runs_real_options() -> None:
    """Compose's and Kubernetes' `mlflow server` arguments are options MLflow really has."""
    from mlflow.cli import server

    options = {opt for p in server.params for opt in p.opts}
    runs = [
        (
            _compose()["services"]["mlflow"]["entrypoint"],
            _compose()["services"]["mlflow"]["command"],
        )
    ]
    for doc in _render("base"):
        runs += [(c["command"], c["args"]) for c in _containers(doc) if c["name"] == "mlflow"]
    assert len(runs) == 2
    for entry, args in runs:
        assert entry == ["radvigil-entrypoint", "mlflow"] and args[0] == "server"
        for arg in args[1:]:
            assert arg.split("=")[0] in options, f"mlflow server has no option {arg}"


def test_compose_mlflow_needs_a_password_and_is_not_published() -> None:
    services = _compose()["services"]
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    assert not any(c.startswith("--backend-store-uri") for c in mlflow["command"])
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD_FILE"].startswith("/run/secrets/")
    ini = (DEPLOY / "mlflow" / "basic_auth.ini").read_text()
    assert "default_permission = NO_PERMISSIONS" in ini and "admin_password" not in ini
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"nginx", "grafana"}, published
    assert all(p.startswith("127.0.0.1:") for p in services["grafana"]["ports"])
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in services["grafana"]["environment"]


def test_postgres_has_separate_roles_and_no_password_on_a_command_line() -> None:
    postgres = _compose()["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    script_mount = "./postgres/init-roles.sh:/docker-entrypoint-initdb.d/10-roles.sh:ro"
    assert script_mount in postgres["volumes"]
    script = (DEPLOY / "postgres" / "init-roles.sh").read_text()
    assert "\\getenv radvigil_password" in script and "\\getenv mlflow_password" in script
    commands = [line for line in script.splitlines() if line.startswith("psql")]
    assert commands and not any("password" in c.lower() for c in commands)  # none in argv
    assert "PGPASSWORD" not in script
    for role in ("radvigil", "mlflow"):
        assert f"CREATE ROLE {role} LOGIN NOSUPERUSER" in script
        assert f"CREATE DATABASE {role} OWNER {role};" in script
    maker = (DEPLOY / "secrets" / "make-secrets.sh").read_text()
    assert "postgresql+psycopg://radvigil:" in maker and "postgresql+psycopg://mlflow:" in maker


# --- Dockerfile and nginx -----------------------------------------------------------------------


def test_dockerfile_installs_from_the_hashed_wheelhouse_only() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "--extra-index-url" not in dockerfile and "--index-url" not in dockerfile
    assert "--no-index" in dockerfile and "--require-hashes" in dockerfile
    assert "RADVIGIL_AUDIT_KEY_FILE=/run/secrets/audit_key" in dockerfile
    assert "RADVIGIL_STORE_REVIEW_IMAGES=true" in dockerfile
    lock = (DEPLOY / "docker" / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", lock, re.M))
    entries = [line for line in lock.splitlines() if line and not line.startswith(("#", " "))]
    assert len(pins) == len(entries), "every lock entry needs exactly one sha256"
    project = (REPO / "pyproject.toml").read_text()
    for name in ("torch", "torchvision", "onnxruntime", "mlflow", "fastapi"):
        assert f'"{name}=={pins[name]}"' in project, f"{name} in the lock differs from pyproject"


def test_nginx_has_no_cbc_suites_and_no_version() -> None:
    conf = (DEPLOY / "nginx" / "radvigil.conf").read_text()
    assert re.search(r"^server_tokens off;", conf, re.M)
    assert re.search(r"ssl_protocols\s+TLSv1\.2 TLSv1\.3;", conf)
    ciphers = re.search(r"ssl_ciphers\s+([^;]+);", conf).group(1).split(":")
    assert ciphers and all(("GCM" in c or "CHACHA20-POLY1305" in c) for c in ciphers), ciphers
    assert all(c.startswith("ECDHE-") for c in ciphers), "forward secrecy only"


def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    """The real ``nginx -t`` on deploy/nginx/radvigil.conf, hostnames mapped to loopback."""
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(DEPLOY / "certs" / "make-self-signed.sh", certs)
    subprocess.run(["sh", str(certs / "make-self-signed.sh")], check=True, capture_output=True)
    conf = (DEPLOY / "nginx" / "radvigil.conf").read_text()
    conf = conf.replace("api-1:8000", "127.0.0.1:1").replace("api-2:8000", "127.0.0.1:2")
    (tmp_path / "radvigil.conf").write_text(conf.replace("/etc/nginx/certs", str(certs)))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/radvigil.conf; }}\n"
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed (make test installs nginx-light)")
    result = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    broken = conf.replace("server_tokens off;", "server_tokens off")  # the check can fail
    (tmp_path / "radvigil.conf").write_text(broken.replace("/etc/nginx/certs", str(certs)))
    again = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert again.returncode != 0


def _radvigil_args(command: list[str] | None, args: list[str] | None) -> list[list[str]]:
    """The radvigil argument lists a container runs (direct, or inside an ``sh -c`` loop)."""
    if command and command[:2] == ["sh", "-c"]:
        return [m.split() for m in re.findall(r"radvigil ([^;]+)", " ".join(args or []))]
    if command and command != ["radvigil"]:
        return []  # another program in the image (MLflow: see test_mlflow_runs_real_options)
    return [args] if args else []


def test_compose_and_kubernetes_run_real_radvigil_commands() -> None:
    for name, service in _compose()["services"].items():
        if service.get("image", "").startswith("${RADVIGIL_IMAGE"):
            entry = service.get("entrypoint")
            if entry in (None, ["radvigil"], ["sh", "-c"]):
                for args in _radvigil_args(entry, service["command"]):
                    _assert_cli(args, f"compose {name}")
    checked = 0
    for kustomization in ("overlays/prod", "ray"):
        for doc in _render(kustomization):
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            for container in _containers(doc):
                for args in _radvigil_args(container.get("command"), container.get("args")):
                    _assert_cli(args, where)
                    checked += 1
            if doc["kind"] == "RayJob":
                _assert_cli(doc["spec"]["entrypoint"].split()[1:], "RayJob entrypoint")
    assert checked >= 4  # api, monitor, loop check, retrain


# --- Kubernetes ----------------------------------------------------------------------------


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    templates = [spec.get("template", {})]
    templates.append(spec.get("jobTemplate", {}).get("spec", {}).get("template", {}))
    cluster = spec.get("rayClusterSpec", {})
    templates.append(cluster.get("headGroupSpec", {}).get("template", {}))
    templates += [g.get("template", {}) for g in cluster.get("workerGroupSpecs", [])]
    return [c for t in templates for c in t.get("spec", {}).get("containers", [])]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomize_renders(kustomization: str) -> None:
    docs = _render(kustomization)
    kinds = {doc["kind"] for doc in docs}
    assert "Secret" not in kinds, "secrets are created by the platform, never rendered"
    if kustomization == "ray":
        assert {"RayJob", "PersistentVolumeClaim"} <= kinds
        return
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "CronJob",
    } <= kinds
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    api = by_name[("Deployment", "radvigil-api")]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "/ready" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert by_name[("Ingress", "radvigil-api")]["spec"]["ingressClassName"] == "nginx"
    assert ("Deployment", "radvigil-monitor") in by_name
    assert by_name[("CronJob", "radvigil-retrain")]["spec"]["suspend"] is True
    for doc in docs:
        for c in _containers(doc):
            env = {e["name"]: e for e in c.get("env", [])}
            if doc["metadata"]["name"] == "radvigil-mlflow":
                for var in (
                    "MLFLOW_BACKEND_STORE_URI",
                    "MLFLOW_AUTH_ADMIN_PASSWORD",
                    "MLFLOW_FLASK_SERVER_SECRET_KEY",
                ):
                    assert "secretKeyRef" in env[var]["valueFrom"], var
                continue
            for var in ("RADVIGIL_DATABASE_URL", "RADVIGIL_AUDIT_KEY", "MLFLOW_TRACKING_PASSWORD"):
                assert "secretKeyRef" in env[var]["valueFrom"], (doc["metadata"]["name"], var)
    config = by_name[("ConfigMap", "radvigil-config")]["data"]
    assert config["RADVIGIL_STORE_REVIEW_IMAGES"] == "true"
    assert config["MLFLOW_TRACKING_USERNAME"] == "admin"


def test_kubernetes_denies_by_default_and_mlflow_is_private() -> None:
    docs = _render("overlays/prod")
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deny = by_name[("NetworkPolicy", "default-deny")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for policy in policies:  # no allow-all rule anywhere
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            assert rule, f"{policy['metadata']['name']} has an empty (allow-all) rule"
    mlflow_policy = by_name[("NetworkPolicy", "radvigil-mlflow")]["spec"]
    sources = mlflow_policy["ingress"][0]["from"]
    assert all(set(s) == {"podSelector"} for s in sources), "only pods of this namespace"
    assert by_name[("Service", "radvigil-mlflow")]["spec"]["type"] == "ClusterIP"
    mlflow = by_name[("Deployment", "radvigil-mlflow")]["spec"]["template"]["spec"]
    assert "--app-name=basic-auth" in mlflow["containers"][0]["args"]
    ini = by_name[("ConfigMap", "radvigil-mlflow-auth")]["data"]["basic_auth.ini"]
    assert ini.strip() == _ini_body(DEPLOY / "mlflow" / "basic_auth.ini")
    assert not any(d["kind"] == "Ingress" and "mlflow" in d["metadata"]["name"] for d in docs)


def _ini_body(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))


def test_terraform_supplies_every_secret_the_manifests_reference() -> None:
    main = (DEPLOY / "terraform" / "main.tf").read_text()
    referenced: dict[str, set[str]] = {}
    for kustomization in ("overlays/prod", "ray"):
        for doc in _render(kustomization):
            for c in _containers(doc):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        referenced.setdefault(ref["name"], set()).add(ref["key"])
    assert set(referenced) == {"radvigil-secrets", "radvigil-mlflow"}
    for keys in referenced.values():
        for key in keys:
            assert re.search(rf'"{key}"\s+= var\.', main), f"terraform never sets {key}"
    variables = (DEPLOY / "terraform" / "variables.tf").read_text()
    for var in (
        "audit_key",
        "mlflow_admin_password",
        "mlflow_backend_store_uri",
        "mlflow_flask_secret_key",
    ):
        block = variables[variables.index(f'variable "{var}"') :].split("\n}\n")[0]
        assert "sensitive   = true" in block and "default" not in block, var


def test_overlays_differ_where_they_should() -> None:
    dev = {(d["kind"], d["metadata"]["name"]): d for d in _render("overlays/dev")}
    prod = {(d["kind"], d["metadata"]["name"]): d for d in _render("overlays/prod")}
    assert dev[("Deployment", "radvigil-api")]["metadata"]["namespace"] == "radvigil-dev"
    assert prod[("Deployment", "radvigil-api")]["spec"]["replicas"] == 3
    assert prod[("PodDisruptionBudget", "radvigil-api")]["spec"]["minAvailable"] == 2
    assert dev[("ConfigMap", "radvigil-config")]["data"]["RADVIGIL_ENV"] == "development"


# --- Prometheus and Grafana ----------------------------------------------------------------


def _exported_series() -> set[str]:
    """Every series name the service's /metrics can show (histograms and counters expanded)."""
    names: set[str] = set()
    for family in ServiceMetrics().registry.collect():
        if family.type == "histogram":
            names |= {f"{family.name}{s}" for s in ("_bucket", "_sum", "_count")}
        elif family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        else:
            names.add(family.name)
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(radvigil_[a-z_]+)", expr))


def test_alert_rules_and_dashboard_use_exported_metrics() -> None:
    exported = _exported_series()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"RadvigilDriftAlertOpen", "RadvigilModelLoadFailure", "RadvigilSpoolBacklog"} <= names
    assert any("histogram_quantile(0.95" in e for e in exprs)
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "radvigil.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used, "no radvigil metric referenced"
    assert used <= exported, f"not exported by the service: {sorted(used - exported)}"


def test_prometheus_config_loads_the_rules_compose_mounts() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    job = config["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == ["api-1:8000", "api-2:8000"]
    mounts = _compose()["services"]["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
