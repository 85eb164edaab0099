"""The stack's nginx starts on another port when the one it picked was taken meanwhile.

Debian's real nginx; the one replica behind it is a stdlib HTTP server answering ``/health``
(what is tested is nginx's start, not the service behind it).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from radvigil.stack import Stack, StackConfig, topology
from radvigil.stack.processes import StackError, free_port, require_tool

pytestmark = pytest.mark.integration


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stack() -> Iterator[Stack]:
    require_tool("nginx")
    replica = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=replica.serve_forever, daemon=True).start()
    stack = Stack(StackConfig(replicas=1))
    stack.replica_ports = [replica.server_address[1]]
    try:
        yield stack
    finally:
        stack.stop()
        replica.shutdown()


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_nginx_picks_another_port_when_its_first_was_taken(
    stack: Stack, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = iter([taken])
    monkeypatch.setattr(topology, "free_port", lambda: next(picks, None) or free_port())
    stack._start_nginx()
    assert stack.nginx_port != taken
    assert httpx.get(f"{stack.url}/health", timeout=5).status_code == 200
    assert "Address already in use" in (stack.root / "nginx.log").read_text()


def test_nginx_that_cannot_bind_says_why(
    stack: Stack, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topology, "free_port", lambda: taken)
    with pytest.raises(StackError, match="Address already in use"):
        stack._start_nginx(tries=2)
