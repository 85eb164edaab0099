"""The nginx configuration of the loopback stack: one upstream of replicas, the retry policy.

The load-balancing and retry directives are the ones ``deploy/nginx/radvigil.conf`` uses behind
TLS; here nginx listens on plain HTTP on 127.0.0.1 and adds an ``X-Upstream`` header naming the
replica that answered (for the tests and the benchmark; not in the production file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# Retry on the other replica only where the request cannot have been processed twice. Without
# `non_idempotent`, nginx passes a POST on only when it never reached the first replica
# (connection refused or failed before sending), so a prediction is never stored twice; a POST
# in flight on a replica that dies gets a 502, which the client may retry (a new prediction).
NEXT_UPSTREAM = "error timeout http_502 http_503"

TEMPLATE = """\
{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$remote_addr "$request" $status $upstream_addr $upstream_status '
                        '$request_time $upstream_response_time';
    access_log {root}/access.log upstream;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;

    upstream radvigil_api {{
        least_conn;
{servers}
        keepalive 32;
        keepalive_timeout 4s;  # below uvicorn's 5 s, so nginx never reuses a closed connection
    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;
        client_body_buffer_size 1m;
        location / {{
            proxy_pass http://radvigil_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_next_upstream {next_upstream};
            proxy_next_upstream_tries 2;
            proxy_next_upstream_timeout 10s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def render(root: Path, port: int, replica_ports: Sequence[int]) -> str:
    """nginx.conf for ``replica_ports`` behind 127.0.0.1:``port``; temp files under ``root``."""
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in replica_ports
    )
    # nginx's master runs as whoever starts it; as root its workers need an unprivileged user.
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return TEMPLATE.format(
        user=user, root=root, port=port, servers=servers, next_upstream=NEXT_UPSTREAM
    )


def write_config(root: Path, port: int, replica_ports: Sequence[int]) -> Path:
    """Write the config and the temp folders nginx's workers write request bodies to."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / name).mkdir(parents=True, exist_ok=True)
        (root / "tmp" / name).chmod(0o777)  # workers run as nobody when started by root
    path = root / "nginx.conf"
    path.write_text(render(root, port, replica_ports))
    return path
