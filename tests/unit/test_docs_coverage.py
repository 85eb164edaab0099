"""Every setting, HTTP route and CLI command is documented under docs/ (issue #32).

The README links to docs/; this test keeps docs/ complete, so a new environment variable, route or
command fails CI until someone writes down what it does.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from radvigil.cli import COMMANDS, load_command
from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.service.app import create_app
from tests.helpers import mlflow_store

DOCS = Path(__file__).resolve().parents[2] / "docs"
PARAM = re.compile(r"\{[^}]*\}")


def docs_text() -> str:
    """All of docs/ as one string (results pages included)."""
    return "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))


def setting_names() -> list[str]:
    """The environment variable each Settings field is read from."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.append(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def command_paths() -> list[str]:
    """Every command as typed after ``radvigil`` ("data import", "demo", ...)."""
    paths: list[str] = []
    for name in COMMANDS:
        command = load_command(name)
        subcommands = getattr(command, "commands", None)
        if subcommands:
            paths.extend(f"{name} {sub}" for sub in subcommands)
        else:
            paths.append(name)
    return paths


def route_lines(tmp_path: Path) -> list[str]:
    """``METHOD /path`` for every route of the app, path parameters written as ``{}``."""
    mlflow_store(tmp_path / "home" / "mlflow.db")
    app = create_app(Settings(home=tmp_path / "home"), mounts=[dashboard_mount])
    lines = []
    for context in iter_route_contexts(app.routes):
        path = PARAM.sub("{}", context.path or "")
        if isinstance(context.original_route, Mount):
            lines.append(f"GET {path}/")
            continue
        for method in sorted((context.methods or {"GET"}) - {"HEAD", "OPTIONS"}):
            lines.append(f"{method} {path}")
    return lines


def test_every_setting_is_documented() -> None:
    names = setting_names()
    assert "RADVIGIL_HOME" in names and "MLFLOW_TRACKING_URI" in names
    text = docs_text()
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"settings missing from docs/: {missing}"


def test_every_cli_command_is_documented() -> None:
    paths = command_paths()
    assert "data import" in paths and "rollout rollback" in paths
    text = docs_text()
    missing = [p for p in paths if f"radvigil {p}" not in text]
    assert not missing, f"commands missing from docs/ (write `radvigil {{command}}`): {missing}"


def test_every_route_is_documented(tmp_path: Path) -> None:
    lines = route_lines(tmp_path)
    assert "POST /v1/predict" in lines and "GET /health" in lines
    text = PARAM.sub("{}", docs_text())
    missing = [line for line in lines if f"`{line}" not in text]
    assert not missing, f"routes missing from docs/ (write `METHOD /path`): {missing}"


def test_readme_is_a_short_guide_linking_docs() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert len(readme.splitlines()) <= 400
    for page in ("configuration.md", "api.md", "cli.md", "monitoring.md", "results/"):
        assert f"docs/{page}" in readme, page


def test_relative_links_in_docs_resolve() -> None:
    broken = []
    for page in [DOCS.parent / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken, broken
