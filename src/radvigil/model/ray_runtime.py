"""Reaching Ray: a local instance sized to this machine, or an existing cluster by address.

Ray is imported only here and in the modules that train or tune on it, and only when a user asks
for the Ray backend, so the in-process path never pays Ray's start-up.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from radvigil.errors import ModelError

CONNECT_TIMEOUT_S = 5.0


@contextmanager
def ray_session(address: str | None, need_cpus: float, what: str) -> Iterator[None]:
    """Connect to ``address`` (or ``RAY_ADDRESS``) or start a local instance; check CPUs.

    A session this function started is shut down on exit; one the caller already opened is left
    alone. Ray's usage-statistics upload is switched off (no hidden network traffic).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    started = False
    if not ray.is_initialized():
        address = check_address(address)
        quiet = ray.LoggingConfig(log_level="ERROR")
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING, logging_config=quiet)
            else:
                ray.init(
                    address="local",  # a new instance, never one another program left running
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    logging_config=quiet,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a local instance"
            raise ModelError(f"cannot start or reach Ray ({where}): {exc}") from exc
        started = True
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if cpus < need_cpus:
            raise ModelError(
                f"{what} needs {need_cpus:g} CPUs but the Ray cluster has {cpus:g}; "
                "use fewer workers or a larger cluster (RAY_ADDRESS)"
            )
        yield
    finally:
        if started:
            ray.shutdown()


def check_address(address: str | None) -> str | None:
    """The cluster address to use (``address``, else ``RAY_ADDRESS``), checked to answer.

    Called before any data is loaded too, so a dead address fails in seconds, not after minutes
    of decoding images (Ray itself retries for minutes).
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        _check_reachable(address)
    return address


def _check_reachable(address: str) -> None:
    if address.startswith("ray://"):
        raise ModelError(
            "Ray Client addresses (ray://) are not supported; run radvigil on a node of the "
            "cluster with RAY_ADDRESS=HEAD:6379"
        )
    parsed = urlsplit(address if "://" in address else f"ray-gcs://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ModelError(f"Ray address {address!r} is not HOST:PORT or 'auto'")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ModelError(f"Ray cluster at {address} is not reachable: {exc}") from exc
