"""Static checks of deploy/: Compose, kustomize, Terraform, Prometheus, Grafana, checkov.

Nothing here starts a container (there is no Docker daemon or cluster on the CI machines): the
files are parsed, rendered with the real ``kubectl kustomize``, formatted/validated with the real
``terraform`` and scanned with the real ``checkov`` and ``hadolint`` (in their own venv,
``.venv-deploy-lint``, which ``make test`` builds: checkov pins packaging 23 and networkx 2, older
than torch and MLflow need).
"""

from __future__ import annotations

import json
import os
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
LINT_BIN = Path(os.environ.get("RADVIGIL_DEPLOY_LINT", REPO / ".venv-deploy-lint")) / "bin"
CHECKOV, HADOLINT = LINT_BIN / "checkov", LINT_BIN / "hadolint"
TF_PLUGINS = Path(os.environ.get("RADVIGIL_TF_PLUGIN_DIR", "/opt/tf-plugins"))


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
    """Passwords and keys come from the operator's environment (``${VAR:?}``), never the file."""
    compose = _compose()
    secretive = re.compile(r"(?i)password|secret|_key\b|token")
    for name, service in compose["services"].items():
        for var, value in (service.get("environment") or {}).items():
            if secretive.search(var) or "@" in str(value):
                assert "${" in str(value), f"{name}: {var} holds a literal value"
    assert compose["secrets"]["scrape_key"] == {"environment": "RADVIGIL_SCRAPE_KEY"}


def _radvigil_args(command: list[str] | None, args: list[str] | None) -> list[list[str]]:
    """The radvigil argument lists a container runs (direct, or inside an ``sh -c`` loop)."""
    if command and command[:2] == ["sh", "-c"]:
        return [m.split() for m in re.findall(r"radvigil ([^;]+)", " ".join(args or []))]
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
            assert "secretKeyRef" in env["RADVIGIL_DATABASE_URL"]["valueFrom"]


def test_overlays_differ_where_they_should() -> None:
    dev = {(d["kind"], d["metadata"]["name"]): d for d in _render("overlays/dev")}
    prod = {(d["kind"], d["metadata"]["name"]): d for d in _render("overlays/prod")}
    assert dev[("Deployment", "radvigil-api")]["metadata"]["namespace"] == "radvigil-dev"
    assert prod[("Deployment", "radvigil-api")]["spec"]["replicas"] == 3
    assert prod[("PodDisruptionBudget", "radvigil-api")]["spec"]["minAvailable"] == 2
    assert dev[("ConfigMap", "radvigil-config")]["data"]["RADVIGIL_ENV"] == "development"


# --- Terraform -----------------------------------------------------------------------------


def test_terraform_is_formatted() -> None:
    result = subprocess.run(
        [_tool("terraform"), "fmt", "-check", "-diff", "-recursive", str(DEPLOY / "terraform")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_validates_where_the_provider_is_available_offline(tmp_path: Path) -> None:
    """``terraform validate`` needs hashicorp/kubernetes; CI has no registry access."""
    provider = TF_PLUGINS / "registry.terraform.io" / "hashicorp" / "kubernetes"
    if not provider.is_dir():
        pytest.skip(
            f"hashicorp/kubernetes is not in the offline plugin mirror {TF_PLUGINS} (only what "
            "is there can be installed without the registry); fmt -check still ran"
        )
    work = tmp_path / "tf"
    shutil.copytree(DEPLOY / "terraform", work)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": "/dev/null"}
    for command in (["init", "-backend=false", f"-plugin-dir={TF_PLUGINS}"], ["validate"]):
        result = subprocess.run(
            [_tool("terraform"), *command],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


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


# --- checkov -------------------------------------------------------------------------------


@pytest.mark.slow
def test_checkov_passes_on_dockerfile_kubernetes_and_terraform(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip(f"checkov not installed at {CHECKOV}; `make test` builds .venv-deploy-lint")
    rendered = tmp_path / "k8s"
    rendered.mkdir()
    for kustomization in KUSTOMIZATIONS:
        docs = _render(kustomization)
        name = kustomization.replace("/", "-")
        (rendered / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    result = subprocess.run(
        [
            str(CHECKOV),
            "--config-file",
            str(DEPLOY / "checkov.yaml"),
            *("-d", str(rendered), "-d", str(DEPLOY / "docker"), "-d", str(DEPLOY / "terraform")),
            *("--framework", "kubernetes", "dockerfile", "terraform"),
            *("--output", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    reports, text, decoder = [], result.stdout.strip(), json.JSONDecoder()
    while text:  # one JSON document per directory, back to back
        doc, end = decoder.raw_decode(text)
        reports += doc if isinstance(doc, list) else [doc]
        text = text[end:].strip()
    failed = {
        f"{r['check_type']}: {c['check_id']} {c['check_name']} ({c['resource']})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    }
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert {r["check_type"] for r in reports} >= {"kubernetes", "dockerfile", "terraform"}
    assert passed > 0
    assert not failed, "\n".join(sorted(failed))


def test_hadolint_passes_on_the_dockerfile() -> None:
    if not HADOLINT.exists():
        pytest.skip(f"hadolint not installed at {HADOLINT}; `make test` builds .venv-deploy-lint")
    result = subprocess.run(
        [str(HADOLINT), str(DEPLOY / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
