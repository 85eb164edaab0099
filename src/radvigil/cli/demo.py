"""``radvigil demo``: the closed-loop scenario on the bundled real data, printed with Rich.

The scenario itself (:mod:`radvigil.demo.scenario`) does the work and returns typed results;
this module only prepares the home folder and prints each step as it finishes.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import typer

REPO = Path(__file__).resolve().parents[3]


def demo_command(
    fresh: bool = typer.Option(False, "--fresh", help="Delete the radvigil home first."),
    config: Path | None = typer.Option(
        None, help="Training config of every model (default: the demo scenario's, in configs/)."
    ),
    criteria: Path | None = typer.Option(
        None, help="Gate criteria of every model (default: the demo scenario's, in configs/)."
    ),
) -> None:
    """Run the closed-loop demo on the bundled data (about 5-10 minutes on 2 CPU cores)."""
    from radvigil.cli.demo_output import RichObserver, print_intro, print_summary
    from radvigil.config import get_settings
    from radvigil.demo.harness import running_service
    from radvigil.demo.outcomes import ScenarioConfig
    from radvigil.demo.scenario import Scenario
    from radvigil.errors import ConfigError
    from radvigil.registry import quiet_mlflow

    settings = get_settings()
    home = settings.home_dir
    if home.exists() and any(home.iterdir()):
        if not fresh:
            raise ConfigError(
                f"{home} is not empty; pass --fresh to reset it for the demo "
                "(or set RADVIGIL_HOME to another folder)"
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    quiet_mlflow()  # the demo prints what matters itself
    for name in ("radvigil", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    chosen = {"train_config": config, "criteria": criteria}
    scenario_config = ScenarioConfig.demo(REPO, **{k: v for k, v in chosen.items() if v})
    print_intro(scenario_config)
    started = time.perf_counter()
    scenario = Scenario(scenario_config, settings, running_service, RichObserver())
    result = scenario.run()
    print_summary(result, scenario.settings, time.perf_counter() - started)
