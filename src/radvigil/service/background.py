"""Run an app with uvicorn on a free loopback port in a background thread of this process.

Used by the demo, the benchmarks and the tests, which all need a real server beside their own
code; ``radvigil serve`` runs uvicorn in the foreground instead.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class BackgroundServer:
    """A context manager: starts uvicorn on 127.0.0.1:<port> (default: a free one), stops it."""

    def __init__(
        self,
        app: Any,
        *,
        log_level: str = "warning",
        start_timeout: float = 60,
        port: int | None = None,
    ) -> None:
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level=log_level,
            access_log=False,
            proxy_headers=False,  # radvigil's app decides whom to trust (trusted_proxies)
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
