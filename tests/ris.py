"""Stand-ins for a RIS that run here: a small FHIR endpoint and an MLLP listener on loopback.

No FHIR server can run in this environment, so :class:`FhirEndpoint` is a minimal one written
for the tests: it validates every body with ``fhir.resources`` (the R4B Bundle model), requires
the bearer token, answers 503 to the first ``unavailable`` requests, and applies each entry's
conditional create (``ifNoneExist``) the way a FHIR server does, so a re-send creates nothing.
:class:`MllpListener` is the ``hl7`` package's own asyncio MLLP server answering with the ACK
codes it is given (``AA``, ``AE``, ``AR``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hl7
from fhir.resources.R4B.bundle import Bundle
from hl7.mllp import start_hl7_server
from pydantic import ValidationError

from radvigil.stack.processes import free_port


class FhirEndpoint:
    """A FHIR transaction endpoint at ``url`` (POST a Bundle to the base URL)."""

    def __init__(self, token: str, unavailable: int = 0, delay_s: float = 0.0) -> None:
        self.token, self.unavailable, self.delay_s = token, unavailable, delay_s
        self.posts: Counter[str] = Counter()  # report identifier -> POSTs that carried it
        self.created: dict[str, str] = {}  # ifNoneExist condition -> id of the created resource
        self.statuses: list[int] = []
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FhirEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict]:
        """Status and JSON body for one POST (the server logic, apart from HTTP)."""
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, _outcome("login")
        if not headers.get("content-type", "").startswith("application/fhir+json"):
            return 415, _outcome("not-supported")
        try:
            bundle = Bundle.model_validate_json(raw)
        except ValidationError:
            return 400, _outcome("structure")
        if bundle.type != "transaction" or not all(
            e.request and e.request.method == "POST" and e.request.ifNoneExist
            for e in bundle.entry or []
        ):
            return 400, _outcome("invariant")
        if any(e.resource.status != "preliminary" for e in bundle.entry or []):
            return 422, _outcome("business-rule")
        with self.lock:
            report = bundle.entry[0].resource.identifier[0].value
            self.posts[report] += 1
            self.bodies.append(json.loads(raw))
            if self.unavailable > 0:
                self.unavailable -= 1
                return 503, _outcome("transient")
            entries = []
            for entry in bundle.entry:
                key = f"{entry.request.url}?{entry.request.ifNoneExist}"
                existed = key in self.created
                self.created.setdefault(key, str(len(self.created) + 1))
                entries.append(
                    {
                        "response": {
                            "status": "200 OK" if existed else "201 Created",
                            "location": f"{entry.request.url}/{self.created[key]}",
                        }
                    }
                )
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(endpoint.delay_s)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = endpoint.answer(headers, raw)
                endpoint.statuses.append(status)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:  # keep test output quiet
                return

        return Handler


def _outcome(code: str) -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": "CANARY-ECHO of the input"}],
    }


class MllpListener:
    """``hl7.mllp``'s server on loopback; answers each message with the next ACK code."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = list(codes)
        self.received: list[hl7.Message] = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None

    async def _client(self, reader, writer) -> None:
        try:
            while not reader.at_eof():
                message = await reader.readmessage()
                self.received.append(message)
                code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
                writer.writemessage(message.create_ack(ack_code=code))
                await writer.drain()
        except asyncio.IncompleteReadError:  # the sender closed the connection
            pass
        finally:
            writer.close()

    def __enter__(self) -> MllpListener:
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(
            start_hl7_server(self._client, "127.0.0.1", self.port), self.loop
        )
        self.server = started.result(timeout=10)
        return self

    def __exit__(self, *_exc: object) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
