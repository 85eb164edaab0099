"""Property test of the HTTP API: Schemathesis generates requests for every operation in the
served OpenAPI schema and no request, valid or not, may make the service answer 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Operations that run a model or a monitoring job per request get fewer examples.
EXPENSIVE = r"^/v1/(monitoring/run|predict/explain)$"

FUZZ = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def live_api(trained_home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The service on a real port, with an admin key: ``(base_url, token)``."""
    from radvigil.config import Settings
    from radvigil.service.app import create_app
    from radvigil.store import KeyStore
    from tests.helpers import LiveServer

    home, _ = trained_home
    settings_ = Settings(home=tmp_path_factory.mktemp("fuzz"), monitor_interval_seconds=0)
    app = create_app(settings_, registry=home.registry)
    token, _key = KeyStore(app.state.radvigil.db).create(
        "fuzz-admin", "admin", rate_limit=1_000_000
    )
    with LiveServer(app) as server:
        yield server.url, token


@pytest.fixture(scope="module")
def api_schema(live_api):
    url, token = live_api
    return schemathesis.openapi.from_url(f"{url}/openapi.json", headers={"X-API-Key": token})


def _fuzz(schema, live_api, max_examples: int) -> list[str]:
    """Run every operation of ``schema`` for ``max_examples`` cases; return the failures
    (a 5xx answer, or an operation that sent no request at all)."""
    # schemathesis.pytest.from_fixture (the lazy loader) does not work with pytest 9
    # (it writes Function._nodeid), so the operations are driven with plain Hypothesis.
    url, token = live_api
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "no operations matched"
    for operation in operations:
        sent = 0
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @settings(max_examples=max_examples, phases=[Phase.explicit, Phase.generate], **FUZZ)
        def run(case) -> None:
            nonlocal sent
            sent += 1
            response = case.call(base_url=url, headers={"X-API-Key": token}, timeout=60)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        # Schemathesis' FailureGroup is a BaseExceptionGroup, not an Exception.
        except (Exception, BaseExceptionGroup) as exc:  # report all operations' failures
            failures.append(f"{operation.label}: {exc}")
        if not sent:
            failures.append(f"{operation.label}: no request was sent")
        print(f"fuzz: {operation.label}: {sent} requests")
    return failures


def test_api_never_answers_5xx(api_schema, live_api) -> None:
    failures = _fuzz(api_schema.exclude(path_regex=EXPENSIVE), live_api, max_examples=15)
    assert not failures, "\n\n".join(failures)


def test_expensive_api_never_answers_5xx(api_schema, live_api) -> None:
    failures = _fuzz(api_schema.include(path_regex=EXPENSIVE), live_api, max_examples=4)
    assert not failures, "\n\n".join(failures)
