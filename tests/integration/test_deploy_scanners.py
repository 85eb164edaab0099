"""The deploy scanners on deploy/: terraform fmt/validate, checkov and hadolint (real tools).

Moved out of the unit tests: each runs an external scanner for tens of seconds. checkov and
hadolint live in their own venv, ``.venv-deploy-lint``, which ``make test`` builds (checkov pins
packaging 23 and networkx 2, older than torch and MLflow need).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_deploy_static import DEPLOY, KUSTOMIZATIONS, REPO, _render, _tool

pytestmark = [pytest.mark.integration]

LINT_BIN = Path(os.environ.get("RADVIGIL_DEPLOY_LINT", REPO / ".venv-deploy-lint")) / "bin"
CHECKOV, HADOLINT = LINT_BIN / "checkov", LINT_BIN / "hadolint"
TF_PLUGINS = Path(os.environ.get("RADVIGIL_TF_PLUGIN_DIR", "/opt/tf-plugins"))


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


# --- checkov -------------------------------------------------------------------------------


@pytest.mark.slow
def test_checkov_passes_on_dockerfile_kubernetes_and_terraform(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.fail(f"checkov not installed at {CHECKOV}; `make test` builds .venv-deploy-lint")
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


@pytest.mark.slow  # needs .venv-deploy-lint, which `make test` builds and `make check` does not
def test_hadolint_passes_on_the_dockerfile() -> None:
    if not HADOLINT.exists():
        pytest.fail(f"hadolint not installed at {HADOLINT}; `make test` builds .venv-deploy-lint")
    result = subprocess.run(
        [str(HADOLINT), str(DEPLOY / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
