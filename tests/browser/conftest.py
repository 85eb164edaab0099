"""Browser tests: a seeded service on a real uvicorn server, driven by headless Chromium.

The seed is real: the session's tiny trained champion, bundled radiographs (some shifted to
drift), an out-of-distribution DICOM, clinicians' labels, a monitoring run with alerts and a
second trained version as the challenger. Debian's Chromium is used as installed
(``/usr/bin/chromium``); nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image as PILImage

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.data.io import read_image
from radvigil.data.shifts import apply_shift, compose, get_shift
from radvigil.loop.monitor_runs import run_monitors
from radvigil.registry import Tag
from radvigil.service.app import create_app
from radvigil.store import KeyStore
from tests.helpers import LiveServer, tiny_config

CHROMIUM = os.environ.get("RADVIGIL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
MODEL = "chest-pneumonia"
LOCAL_HOSTS = {"127.0.0.1"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the dashboard in headless Chromium")


@dataclass
class Seeded:
    """The running service and what the seed put into it."""

    url: str
    state: object
    tokens: dict[str, str]
    home: object
    challenger: Future
    true_labels: dict[str, str] = field(default_factory=dict)
    alerts: int = 0
    windows: int = 0

    def api(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.tokens[role]}, timeout=60)


def _png(pixels) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _train_challenger(home) -> str:
    """A second tiny model on the same data version: the challenger, with a passing gate."""
    from radvigil.loop.training import run_training

    outcome = run_training(tiny_config(seed=11), home.data_version, home.catalog, home.registry)
    home.registry.set_alias(MODEL, "challenger", outcome.version, "seed", "retrained for the test")
    home.registry.set_version_tag(
        MODEL, outcome.version, Tag.GATE, json.dumps({"passed": True, "failed": []})
    )
    return outcome.version


def _studies(bundled: Path, shared: Path) -> list[tuple[str, bytes, str, str | None]]:
    """(file name, bytes, site, true label) in arrival order: clean, then drifted, then OOD."""
    test = bundled / "kermany" / "test"
    normal, pneumonia = (sorted((test / c).glob("*.jpg")) for c in ("normal", "pneumonia"))
    out = []
    for i, path in enumerate(
        p for pair in zip(normal[:20], pneumonia[:20], strict=True) for p in pair
    ):
        label = path.parent.name
        out.append((path.name, path.read_bytes(), "ward-a" if i % 2 else "ward-b", label))
    shift = compose(get_shift("gamma", gamma=2.2), get_shift("gaussian_noise", sigma=28.0))
    for i, path in enumerate(
        p for pair in zip(normal[20:32], pneumonia[20:32], strict=True) for p in pair
    ):
        pixels = apply_shift(read_image(path).pixels, shift, seed=i)
        out.append((f"shifted-{path.stem}.png", _png(pixels), "ward-c", path.parent.name))
    for dicom in (shared / "dicom" / "RG1_UNCI.dcm", bundled / "dicom" / "RG1_chest_small_512.dcm"):
        out.append((dicom.name, dicom.read_bytes(), "ward-c", None))
    return out


@pytest.fixture(scope="module")
def seeded(trained_home, tmp_path_factory, bundled: Path, shared_data: Path) -> Iterator[Seeded]:
    home, outcome = trained_home
    pool = ThreadPoolExecutor(1)
    challenger = pool.submit(_train_challenger, home)  # trains while the seed runs
    root = tmp_path_factory.mktemp("dashboard-home")
    monitoring = root / "monitoring.yaml"
    monitoring.write_text(json.dumps({"windows": {"size": 16, "group_by": "site"}}))
    settings = Settings(
        home=root,
        store_review_images=True,
        batch_max_wait_ms=2.0,
        monitoring_config=monitoring,
        monitor_interval_seconds=0,
        model_poll_seconds=3600,
    )
    app = create_app(settings, registry=home.registry, mounts=[dashboard_mount])
    state = app.state.radvigil
    keys = KeyStore(state.db)
    tokens = {
        role: keys.create(
            f"{role}-ana" if role == "clinician" else f"{role}-key", role, rate_limit=100_000
        )[0]
        for role in ("admin", "clinician", "auditor")
    }
    tokens["seed"] = keys.create("seed-clinician", "clinician", rate_limit=100_000)[0]
    try:
        with LiveServer(app) as server:
            seed = Seeded(server.url, state, tokens, home, challenger)
            with seed.api("seed") as client:
                for i, (name, data, site, label) in enumerate(_studies(bundled, shared_data)):
                    kind = "application/dicom" if name.endswith(".dcm") else "image/png"
                    kind = "image/jpeg" if name.endswith(".jpg") else kind
                    response = client.post(
                        "/v1/predict",
                        files={"file": (name, data, kind)},
                        data={"metadata": json.dumps({"site": site})},
                    )
                    assert response.status_code == 200, response.text
                    body = response.json()
                    if label is not None:
                        seed.true_labels[body["request_id"]] = label
                    if label is not None and i % 3 == 0:  # some cases are labelled already
                        state.writer.flush(timeout=10)
                        fed = client.post(
                            "/v1/feedback",
                            json={"prediction_id": body["request_id"], "label": label},
                        )
                        assert fed.status_code == 201, fed.text
            state.writer.flush(timeout=10)
            # The service's own runner, without writing every window's Evidently report up
            # front (the dashboard's report link writes one on first view).
            job = state.monitoring
            champion, profile = job.champion()
            run = run_monitors(job.stores, profile, champion.name, champion.version, job.config)
            seed.windows, seed.alerts = len(run.windows), len(run.opened)
            yield seed
    finally:
        pool.shutdown(wait=True)
        _restore_registry(home, outcome.version)


def _restore_registry(home, champion: str) -> None:
    """Leave the session's shared registry as the fixture found it: v1 champion, no rollout."""
    registry = home.registry
    registry.set_alias(MODEL, "champion", champion, "seed", "browser tests done")
    aliases = registry.aliases(MODEL)
    for alias in ("challenger", "previous"):
        if alias in aliases:
            registry.remove_alias(MODEL, alias, "seed", "browser tests done")
    registry.delete_model_tag(MODEL, Tag.ROLLOUT)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; install Debian's chromium package")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Session:
    """One signed-in browser context, recording every request and console error."""

    page: object
    context: object
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def external(self) -> list[str]:
        """Requests to anywhere but this server (data: and blob: URLs stay in the page)."""
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out


@pytest.fixture()
def open_session(browser, seeded) -> Iterator:
    """``open_session(role, width, height)``: a signed-in page; checks no request left the
    server and no console error (CSP violations included) happened, when the test ends."""
    sessions: list[Session] = []

    def open_(role: str, width: int = 1280, height: int = 800) -> Session:
        context = browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        session = Session(context.new_page(), context)
        context.on("request", lambda request: session.requests.append(request.url))
        context.on(
            "console",
            lambda message: (
                session.errors.append(message.text) if message.type == "error" else None
            ),
        )
        session.page.on("pageerror", lambda error: session.errors.append(str(error)))
        sessions.append(session)
        if role:
            sign_in(session.page, seeded.url, seeded.tokens[role])
        return session

    yield open_
    for session in sessions:
        session.context.close()
    for session in sessions:
        assert session.external() == [], f"requests left the server: {session.external()}"
        assert session.errors == [], f"browser console errors: {session.errors}"


def sign_in(page, url: str, token: str) -> None:
    page.goto(f"{url}/dashboard/login")
    page.fill("#api_key", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/dashboard/")


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
