"""``radvigil stack up``: the multi-replica topology on this machine, until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.console import Console

from radvigil.stack import Stack, StackConfig

app = typer.Typer(no_args_is_help=True, help="The production topology on loopback.")
console = Console()
BUNDLED = Path("data/bundled/manifest.csv")


@app.command("up")
def stack_up(
    replicas: int = typer.Option(2, min=1, max=8, help="Service replicas behind nginx."),
    workers: int = typer.Option(1, min=0, max=4, help="Monitoring workers."),
    train: Path | None = typer.Option(
        Path("configs/fast.yaml"),
        help="Training YAML for the first champion (on the bundled data); --no-train to skip.",
    ),
    no_train: bool = typer.Option(False, "--no-train", help="Start without a champion."),
    poll_seconds: float = typer.Option(2.0, min=0.5, help="How often replicas poll the registry."),
    root: Path | None = typer.Option(None, help="Folder for data and logs (default: a temp dir)."),
) -> None:
    """PostgreSQL, an MLflow server, N `radvigil serve` replicas, the monitoring worker and
    nginx, all on 127.0.0.1 with free ports; prints the addresses and an admin key."""
    config = StackConfig(replicas=replicas, workers=workers, poll_seconds=poll_seconds)
    stack = Stack(config, root=root)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        console.print(f"starting PostgreSQL and the MLflow server under {stack.root} ...")
        stack.start_backends()
        if train is not None and not no_train:
            console.print(f"training a first champion ({train}) on {BUNDLED} ...")
            stack.run_cli("data", "import", str(BUNDLED), "--name", "bundled")
            stack.run_cli(
                "train", "--config", str(train), "--data", "bundled", "--alias", "champion"
            )
        console.print(f"starting {replicas} replica(s), {workers} worker(s) and nginx ...")
        stack.start_serving()
        token = stack.admin_key()
        console.print(f"[bold]nginx[/bold]            {stack.url}  (docs: {stack.url}/docs)")
        for index in range(replicas):
            console.print(f"replica {index}        {stack.replica_url(index)}")
        console.print(f"MLflow           {stack.tracking_uri}")
        console.print(f"PostgreSQL       {stack.database_url}")
        console.print(f"logs             {stack.root}/*.log")
        console.print(f"admin key        {token}")
        console.print("Ctrl-C stops everything.")
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping ...")
        stack.stop()
