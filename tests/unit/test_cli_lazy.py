"""The CLI imports a command only when it runs, and its listed help is the command's own."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from radvigil.cli import COMMANDS, app, load_command

HEAVY = ("torch", "mlflow", "fastapi", "ray", "sklearn", "onnxruntime")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    assert command.get_short_help_str(limit=500) == COMMANDS[name][2]


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from radvigil.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_listed_command_runs_and_an_unknown_one_is_refused() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0 and "retrain" in listed.output
    assert "--calibration-only" not in listed.output  # a command's options: only its own help
    sub = runner.invoke(app, ["retrain", "--help"])
    assert sub.exit_code == 0 and "--calibration-only" in sub.output
    unknown = runner.invoke(app, ["no-such-command"])
    assert unknown.exit_code == 2 and "No such command" in unknown.output
