"""A year of a hospital network at 10k, 100k and 1M predictions: what each cost grows with.

For each size, a FRESH PostgreSQL database (CREATE DATABASE on the local server, dropped at the
end) is filled by COPY with a realistic history: predictions of ten sites over days and model
versions (embeddings drawn around the champion's reference profile, image statistics, OOD
scores, 5 % shadow rows, 10 % routed to review), labels on 10 %, review images on the labelled
drifters, monitor results for every window already evaluated, alerts, and one HMAC-chained
audit record per prediction and label (computed with the log's own ``record_hash``). Then:

- a day of new traffic (5,000 predictions) arrives and one incremental monitor run evaluates
  it: ``radvigil monitor run`` in a child process, exactly as the service starts it (wall time,
  and the child's own peak RSS: ``VmHWM`` of its address space, read as it exits);
- every dashboard page and list/query API route is requested on a real uvicorn server against
  that database (p50/p95 of sequential requests, after one warm-up);
- audit verification, the retraining-set build, and a full monitor re-run (results deleted).

The service and the monitor run with ``RADVIGIL_REGISTRY_TRUST=off``: the fresh database holds
no signed gate record for the bench's champion, and trust costs nothing per page anyway.

The COPY goes around the prediction writer, so the rollup tables are then recounted in SQL
(``radvigil db rebuild-rollups``, the migration's backfill; its time is in the table) and the
database is vacuumed, as autovacuum would have left a year-old table.

    python -m bench.scale                       # 10k, 100k and 1M
    python -m bench.scale --sizes 10000 100000  # smaller sizes first

Writes bench/results/scale.json and prints one table per measure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from PIL import Image as PILImage
from psycopg import sql

from bench.common import (
    BUNDLED,
    DEFAULT_OUT,
    LiveServer,
    bench_home,
    console,
    fmt,
    machine,
    machine_line,
    quiet_libraries,
    table,
    write_json,
)
from radvigil.store.audit import HASHED_FIELDS

ADMIN_URL = os.environ.get(
    "RADVIGIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SITES = [f"site-{i:02d}" for i in range(10)]
PER_DAY = 5000  # ten sites reading 500 films a day
CHUNK = 50_000
REQUESTS = 20
SLOW_S = 5.0
LABEL_SHARE, REVIEW_SHARE, SHADOW_SHARE = 0.10, 0.10, 0.05
PREDICTION_COLUMNS = [
    "id",
    "created_at",
    "model_name",
    "model_version",
    "task",
    "probabilities",
    "predicted_class",
    "findings",
    "confidence",
    "warnings",
    "image_stats",
    "embedding",
    "ood_score",
    "latency_ms",
    "site",
    "view_position",
    "study_hash",
    "routed_to_review",
    "review_image",
    "served_by",
    "shadow_of",
]
# A version-1 audit record (no key id), hashed over the fields the audit log itself names.
AUDIT_COLUMNS = [*HASHED_FIELDS, "hash"]


@dataclass
class Champion:
    """What the synthetic history is drawn around: the served version and its profile."""

    name: str
    version: str
    task: str
    classes: list[str]
    embeddings: np.ndarray
    probs: np.ndarray
    stats: list[dict[str, float]]
    detectors: list[str]
    window: int
    png: bytes


@dataclass
class Chain:
    """The audit chain's head while the history is written."""

    secret: str
    last_id: int = 0
    last_hash: str = "0" * 64
    feedback_id: int = 0


@dataclass
class Filled:
    """What was written, and how fast."""

    predictions: int = 0
    rows: int = 0
    seconds: float = 0.0
    rollup_seconds: float = 0.0
    champion_times: list[np.ndarray] = field(default_factory=list)
    champion_sites: list[np.ndarray] = field(default_factory=list)
    champion_labelled: list[np.ndarray] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)


def champion_of(home: Any) -> Champion:
    from radvigil.monitoring import MonitorConfig, ReferenceProfile

    loaded = home.load()
    profile = ReferenceProfile.from_path(loaded.profile_dir)
    ref = profile.reference
    stats = ref.stats.to_dict("records") if ref.stats is not None else [{}]
    first = sorted(BUNDLED.glob("**/*.jpg"))[0]
    buffer = io.BytesIO()
    PILImage.open(first).convert("L").resize((96, 96)).save(buffer, format="PNG")
    config = MonitorConfig()
    return Champion(
        loaded.name,
        loaded.version,
        str(loaded.card.task.name),
        list(profile.class_names),
        np.asarray(ref.embeddings, dtype=np.float32),
        np.asarray(ref.probs, dtype=np.float64),
        [{k: float(v) for k, v in row.items() if v == v} for row in stats],
        list(config.detectors),
        config.windows.size,
        buffer.getvalue(),
    )


def fresh_database(label: str) -> tuple[str, str]:
    """CREATE DATABASE on the local server; returns (name, SQLAlchemy URL)."""
    name = f"scale_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user, host, port = (
        base.get("user", "postgres"),
        base.get("host", "127.0.0.1"),
        base.get("port", 5432),
    )
    return name, f"postgresql+psycopg://{user}@{host}:{port}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def write_predictions(
    conn: psycopg.Connection,
    champ: Champion,
    chain: Chain,
    rng: np.random.Generator,
    times: np.ndarray,
    versions: np.ndarray,
    prefix: str,
    filled: Filled,
    *,
    labels: bool = True,
    sites: np.ndarray | None = None,
    shadows: np.ndarray | None = None,
) -> None:
    """COPY one chunk of predictions (ordered by time) with their labels and audit records
    (``sites`` and ``shadows``: drawn here unless the caller drew them)."""
    from radvigil.store.audit import canonical_json, record_hash

    n = len(times)
    picks = rng.integers(0, len(champ.embeddings), n)
    embeddings = champ.embeddings[picks] + rng.normal(0, 0.05, (n, champ.embeddings.shape[1]))
    probs = champ.probs[picks]
    site_index = rng.integers(0, len(SITES), n) if sites is None else sites
    shadow = rng.random(n) < SHADOW_SHARE if shadows is None else shadows
    routed = rng.random(n) < REVIEW_SHARE
    labelled = (rng.random(n) < LABEL_SHARE) & ~shadow if labels else np.zeros(n, bool)
    ood = rng.gamma(2.0, 0.5, n)
    latency = rng.gamma(4.0, 8.0, n)
    ids = [f"{prefix}-{filled.predictions + i:08d}" for i in range(n)]
    stamps = [datetime.fromtimestamp(float(t), UTC) for t in times]
    predicted = probs.argmax(axis=1)
    feedback_rows, audit_rows = [], []
    with conn.cursor() as cur:
        with cur.copy(f"COPY predictions ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN") as copy:
            for i in range(n):
                cls = champ.classes[predicted[i]]
                version = str(versions[i])
                served = "shadow" if shadow[i] else "champion"
                copy.write_row(
                    (
                        ids[i],
                        stamps[i],
                        champ.name,
                        version,
                        champ.task,
                        json.dumps(
                            dict(zip(champ.classes, probs[i].round(4).tolist(), strict=True))
                        ),
                        cls,
                        json.dumps([cls] if cls != champ.classes[0] else []),
                        float(probs[i].max()),
                        "[]",
                        json.dumps(champ.stats[picks[i] % len(champ.stats)]),
                        embeddings[i].astype("<f4").tobytes(),
                        float(ood[i]),
                        float(latency[i]),
                        SITES[site_index[i]],
                        "PA",
                        None,
                        bool(routed[i]),
                        champ.png if routed[i] and labelled[i] else None,
                        served,
                        ids[i - 1] if shadow[i] and i else None,
                    )
                )
        for i in range(n):
            chain.last_id += 1
            row = {
                "id": chain.last_id,
                "created_at": stamps[i],
                "actor": "service-key",
                "action": "predict",
                "object_type": "prediction",
                "object_id": ids[i],
                "model_version": f"{champ.name}/{versions[i]}",
                "request_id": ids[i],
                "details": {
                    "predicted_class": champ.classes[predicted[i]],
                    "served_by": "shadow" if shadow[i] else "champion",
                    "routed_to_review": bool(routed[i]),
                },
                "prev_hash": chain.last_hash,
            }
            row["hash"] = chain.last_hash = record_hash(row, chain.secret)
            audit_rows.append(row)
        for i in np.flatnonzero(labelled):
            chain.feedback_id += 1
            truth = champ.classes[predicted[i]] if rng.random() < 0.85 else champ.classes[0]
            at = stamps[i] + timedelta(hours=2)
            feedback_rows.append((chain.feedback_id, ids[i], truth, "dr-reader", None, at))
            chain.last_id += 1
            row = {
                "id": chain.last_id,
                "created_at": at,
                "actor": "dr-reader",
                "action": "label",
                "object_type": "prediction",
                "object_id": ids[i],
                "model_version": f"{champ.name}/{versions[i]}",
                "request_id": ids[i],
                "details": {
                    "label": truth,
                    "predicted_class": champ.classes[predicted[i]],
                    "feedback_id": chain.feedback_id,
                },
                "prev_hash": chain.last_hash,
            }
            row["hash"] = chain.last_hash = record_hash(row, chain.secret)
            audit_rows.append(row)
        with cur.copy(
            "COPY feedback (id, prediction_id, label, reviewer, comment, created_at) FROM STDIN"
        ) as copy:
            for values in feedback_rows:
                copy.write_row(values)
        with cur.copy(f"COPY audit_events ({', '.join(AUDIT_COLUMNS)}) FROM STDIN") as copy:
            for row in audit_rows:
                copy.write_row(
                    tuple(
                        canonical_json(row[c]) if c == "details" else row[c] for c in AUDIT_COLUMNS
                    )
                )
    conn.commit()
    champion_rows = (versions == champ.version) & ~shadow
    filled.champion_times.append(times[champion_rows])
    filled.champion_sites.append(site_index[champion_rows])
    filled.champion_labelled.append(labelled[champion_rows])
    filled.predictions += n
    filled.rows += n + len(feedback_rows) + len(audit_rows)
    if len(filled.sample_ids) < 50:
        filled.sample_ids += [ids[i] for i in np.flatnonzero(labelled)[:10]]


def write_monitor_history(conn: psycopg.Connection, champ: Champion, filled: Filled) -> int:
    """Monitor results for every count window already evaluated (overall and per site), plus
    a few alerts: the state a service that has monitored the whole history is in."""
    from radvigil.loop.late_labels import LABELLED, LABELS_KEY

    times = np.concatenate(filled.champion_times)
    sites = np.concatenate(filled.champion_sites)
    labelled = np.concatenate(filled.champion_labelled)
    groups = {"all": (times, labelled)}
    groups |= {
        f"site={SITES[s]}": (times[sites == s], labelled[sites == s]) for s in range(len(SITES))
    }
    now = datetime.now(UTC)
    rows = 0
    with conn.cursor() as cur:
        with cur.copy(
            "COPY monitor_results (created_at, model_name, model_version, window_kind, "
            'window_start, window_end, n, "group", detector, statistic, p_value, threshold, '
            "threshold_source, drift, effect_size, details) FROM STDIN"
        ) as copy:
            for group, (stamps, marks) in groups.items():
                order = np.argsort(stamps, kind="stable")
                stamps, marks = stamps[order], marks[order]
                for s in range(0, len(stamps) - champ.window + 1, champ.window):
                    start = datetime.fromtimestamp(float(stamps[s]), UTC)
                    end = datetime.fromtimestamp(float(stamps[s + champ.window - 1]), UTC)
                    # a labelled row records the labels it was judged on, as the runner does:
                    # without it every stored window with enough labels looked newly labelled
                    seen = int(marks[s : s + champ.window].sum())
                    for detector in champ.detectors:
                        details = {"n_reference": 2000, "n_window": champ.window}
                        if detector in LABELLED:
                            details[LABELS_KEY] = seen
                        copy.write_row(
                            (
                                now,
                                champ.name,
                                champ.version,
                                "count",
                                start,
                                end,
                                champ.window,
                                group,
                                detector,
                                0.1,
                                0.5,
                                0.2,
                                "default",
                                False,
                                0.01,
                                json.dumps(details),
                            )
                        )
                        rows += 1
        for i in range(20):
            cur.execute(
                "INSERT INTO alerts (created_at, updated_at, model_name, model_version, rule, "
                'detector, "group", severity, state, message) VALUES '
                "(%s, %s, %s, %s, %s, %s, %s, 'warning', %s, 'synthetic alert')",
                (
                    now,
                    now,
                    champ.name,
                    champ.version,
                    f"rule-{i}",
                    champ.detectors[0],
                    SITES[i % 10],
                    "open" if i < 3 else "resolved",
                ),
            )
        cur.execute("SELECT setval('feedback_id_seq', (SELECT max(id) FROM feedback))")
    conn.commit()
    return rows


def fill(url: str, champ: Champion, n: int, chain: Chain, rng: np.random.Generator) -> Filled:
    """``n`` predictions over ``n / 5,000`` days ending a day ago; the champion serves the
    newest third, two older versions the rest."""
    filled = Filled()
    end = time.time() - 86400
    days = max(n / PER_DAY, 1.0)
    times = np.sort(rng.uniform(end - days * 86400, end, n))
    versions = np.where(
        times >= end - days * 86400 / 3,
        champ.version,
        np.where(times >= end - days * 86400 * 2 / 3, "old-2", "old-1"),
    )
    sites = rng.integers(0, len(SITES), n)
    shadows = rng.random(n) < SHADOW_SHARE
    # The champion's history ends on a window boundary in every group (its few oldest rows of
    # each site go to the previous version instead), so the new day fills the same windows at
    # every size: otherwise a size whose history left partial windows judges more of them.
    for site in range(len(SITES)):
        rows = np.flatnonzero((versions == champ.version) & ~shadows & (sites == site))
        versions[rows[: len(rows) % champ.window]] = "old-2"
    started = time.perf_counter()
    with psycopg.connect(_libpq(url)) as conn:
        for s in range(0, n, CHUNK):
            chunk = slice(s, s + CHUNK)
            write_predictions(
                conn,
                champ,
                chain,
                rng,
                times[chunk],
                versions[chunk],
                "h",
                filled,
                sites=sites[chunk],
                shadows=shadows[chunk],
            )
        filled.rows += write_monitor_history(conn, champ, filled)
    filled.seconds = time.perf_counter() - started
    started = time.perf_counter()
    rebuild_rollups(url)  # COPY goes around the writer: count as the migration's backfill does
    filled.rollup_seconds = time.perf_counter() - started
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # as autovacuum leaves a year-old table
    return filled


def new_day(url: str, champ: Champion, chain: Chain, rng: np.random.Generator, filled: Filled):
    """A day of champion traffic, ending now (not yet monitored)."""
    end = time.time()
    times = np.sort(rng.uniform(end - 86400, end - 1, PER_DAY))
    with psycopg.connect(_libpq(url)) as conn:
        write_predictions(
            conn,
            champ,
            chain,
            rng,
            times,
            np.full(PER_DAY, champ.version),
            "d",
            filled,
            labels=False,
        )
    rebuild_rollups(url)
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("ANALYZE predictions")


def rebuild_rollups(url: str) -> None:
    """``radvigil db rebuild-rollups``: the rollup tables recounted from the COPY-ed rows."""
    from radvigil.store import Database
    from radvigil.store.rollups import rebuild

    db = Database(url)
    with db.transaction("rebuild rollups") as conn:
        rebuild(conn)
    db.dispose()


# The child's own peak RSS. Not ``wait4``'s ``ru_maxrss``: the kernel carries the high-water mark
# of the address space a child had before ``exec`` over into it, and that address space is a
# copy of this bench process, whose memory grows with the size it filled. Until 7 Dec that
# counted the bench's own 1.1-1.3 GB as the monitor run's. ``VmHWM`` is the peak of the address
# space the child runs in after ``exec``, read at exit by this wrapper around the real CLI.
PEAK_WRAPPER = """\
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as status, open(os.environ["BENCH_PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(_peak)
sys.argv = ["radvigil", *sys.argv[1:]]
runpy.run_module("radvigil", run_name="__main__")
"""


def monitor_child(url: str, home: Any, work: Path) -> dict[str, Any]:
    """``radvigil monitor run`` as the service starts it; wall time and peak RSS of the child."""
    peak_file = work / "monitor-peak-kib"
    env = {
        **os.environ,
        "RADVIGIL_HOME": str(work),
        "RADVIGIL_DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": home.registry.tracking_uri,
        "RADVIGIL_MODEL_NAME": "chest-pneumonia",
        "RADVIGIL_REGISTRY_TRUST": "off",  # see the module docstring
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
        "BENCH_PEAK_FILE": str(peak_file),
    }
    args = [sys.executable, "-c", PEAK_WRAPPER, "monitor", "run", "--json", "--settle", "0"]
    started = time.perf_counter()
    child = subprocess.run(args, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"monitor run failed: {child.stderr.decode()[-2000:]}")
    run = json.loads(child.stdout.decode().strip().splitlines()[-1])
    return {
        "wall_s": wall,
        "peak_rss_mb": int(peak_file.read_text()) / 1024,  # KiB
        "windows": len(run["windows"]),
        "relabelled": len(run["relabelled"]),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(samples, 50)) * 1000,
        "p95_ms": float(np.percentile(samples, 95)) * 1000,
    }


def time_routes(url: str, home: Any, work: Path, sample: str, requests: int) -> dict[str, Any]:
    """p50/p95 of every dashboard page and list/query route on a real uvicorn server."""
    import httpx

    from radvigil.config import Settings
    from radvigil.dashboard.session import SESSION_COOKIE
    from radvigil.dashboard.site import mount
    from radvigil.service.app import create_app
    from radvigil.store import Database, KeyStore

    db = Database(url)
    settings = Settings(
        registry_trust="off",  # see the module docstring
        home=work / "service",
        database_url=url,
        model_poll_seconds=3600,
        monitor_interval_seconds=0,
    )
    app = create_app(settings, registry=home.registry, db=db, mounts=[mount])
    state = app.state.radvigil
    keys = KeyStore(db)
    tokens = {
        role: keys.create(f"bench-{role}-{uuid.uuid4().hex[:6]}", role, rate_limit=10**6)[0]
        for role in ("admin", "clinician", "auditor")
    }
    routes = {
        "api /v1/traffic (24 h)": ("admin", "/v1/traffic"),
        "api /v1/traffic (31 d, 1 h buckets)": (
            "admin",
            "/v1/traffic?hours=744&bucket_seconds=3600",
        ),
        "api /v1/traffic (31 d, 1 s: refused)": ("admin", "/v1/traffic?hours=744&bucket_seconds=1"),
        "api /v1/monitoring/results": ("admin", "/v1/monitoring/results?limit=100"),
        "api /v1/monitoring/alerts": ("admin", "/v1/monitoring/alerts?limit=100"),
        "api /v1/review (queue)": ("clinician", "/v1/review?limit=50"),
        "api /v1/audit": ("auditor", "/v1/audit?limit=100"),
        "api /v1/predictions/{id}": ("admin", f"/v1/predictions/{sample}"),
        "api /v1/model": ("admin", "/v1/model"),
        "api /v1/admin/rollout": ("admin", "/v1/admin/rollout"),
        "api /v1/admin/rollout/shadow-report": ("admin", "/v1/admin/rollout/shadow-report"),
        "api /metrics": ("admin", "/metrics"),
        "page /dashboard/ (overview)": ("admin", "/dashboard/"),
        "page /dashboard/drift": ("admin", "/dashboard/drift"),
        "page /dashboard/performance": ("admin", "/dashboard/performance"),
        "page /dashboard/review (queue)": ("clinician", "/dashboard/review"),
        "page /dashboard/review/{id}": ("clinician", f"/dashboard/review/{sample}"),
        "page /dashboard/models": ("admin", "/dashboard/models"),
        "page /dashboard/audit": ("auditor", "/dashboard/audit"),
    }
    out: dict[str, Any] = {}
    with LiveServer(app) as server:
        clients = {}
        for role, token in tokens.items():
            client = httpx.Client(base_url=server.url, headers={"X-API-Key": token}, timeout=900)
            client.cookies.set(
                SESSION_COOKIE, state.sessions.create_for_person(f"bench-{role}", role)
            )
            clients[role] = client
        for name, (role, path) in routes.items():
            client = clients[role]
            started = time.perf_counter()
            first = client.get(path)
            slow = time.perf_counter() - started > SLOW_S  # a slow route: one more sample, not 20
            samples = []
            for _ in range(1 if slow else requests):
                started = time.perf_counter()
                client.get(path)
                samples.append(time.perf_counter() - started)
            out[name] = {
                "status": first.status_code,
                "bytes": len(first.content),
                **percentiles(samples),
            }
        page = clients["clinician"].get("/v1/review?limit=50").json()
        if page.get("next_after"):
            path = f"/v1/review?limit=50&after={page['next_after']}"
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                clients["clinician"].get(path)
                samples.append(time.perf_counter() - started)
            out["api /v1/review (page 2, by key)"] = {
                "status": 200,
                "bytes": 0,
                **percentiles(samples),
            }
        events = clients["auditor"].get("/v1/audit?limit=100")
        if events.headers.get("X-Next-After"):
            path = f"/v1/audit?limit=100&after={events.headers['X-Next-After']}"
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                clients["auditor"].get(path)
                samples.append(time.perf_counter() - started)
            out["api /v1/audit (page 2, by key)"] = {
                "status": 200,
                "bytes": 0,
                **percentiles(samples),
            }
        for client in clients.values():
            client.close()
    db.dispose()
    return out


def in_process(url: str) -> dict[str, Any]:
    """Audit verification and the retraining-set build, in this process."""
    from radvigil.config import get_settings
    from radvigil.loop.retrain import labelled_drifters
    from radvigil.store import AuditLog, Database, FeedbackStore, PredictionStore

    db = Database(url)
    started = time.perf_counter()
    log = AuditLog(db, secret=get_settings().audit_key)
    verdict = log.verify()
    verify_s = time.perf_counter() - started
    new_day_of_labels(db, log)
    started = time.perf_counter()
    incremental = log.verify(full=False)
    incremental_s = time.perf_counter() - started
    started = time.perf_counter()
    cases = labelled_drifters(PredictionStore(db), FeedbackStore(db))
    retrain_s = time.perf_counter() - started
    db.dispose()
    return {
        "audit_verify_s": verify_s,
        "audit_ok": verdict.ok,
        "audit_verify_incremental_s": incremental_s,
        "audit_incremental_ok": incremental.ok,
        "audit_incremental_records": incremental.checked,
        "audit_records": verdict.checked,
        "retrain_set_s": retrain_s,
        "retrain_cases": len(cases),
    }


def new_day_of_labels(db: Any, log: Any, n: int = 500) -> None:
    """A day of labels after the checkpoint (on the new day's predictions), through the
    label path: feedback row, rollup move and audit record."""
    from radvigil.loop.actions import label_case
    from radvigil.store import FeedbackStore, PredictionStore

    predictions, feedback = PredictionStore(db), FeedbackStore(db)
    for record in predictions.list(limit=n, newest_first=True):
        label_case(predictions, feedback, log, record.id, record.predicted_class, "bench")


def full_rerun(url: str, champ: Champion, home: Any, work: Path) -> dict[str, Any]:
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("DELETE FROM alerts WHERE model_version = %s", (champ.version,))
        conn.execute("DELETE FROM monitor_results WHERE model_version = %s", (champ.version,))
    return monitor_child(url, home, work)


def measure(n: int, champ: Champion, home: Any, requests: int, seed: int) -> dict[str, Any]:
    from radvigil.config import get_settings
    from radvigil.store import upgrade_database

    rng = np.random.default_rng(seed)
    name, url = fresh_database(str(n))
    chain = Chain(secret=get_settings().audit_key)
    try:
        upgrade_database(url)
        console.print(f"[{n:,}] filling {name} ...")
        filled = fill(url, champ, n, chain, rng)
        console.print(
            f"[{n:,}] {filled.predictions:,} predictions, {filled.rows:,} rows in "
            f"{filled.seconds:.1f} s ({filled.rows / filled.seconds:,.0f} rows/s)"
        )
        # the same day of new traffic at every size (its own seed), so runs compare like work
        new_day(url, champ, chain, np.random.default_rng(seed + 1), filled)
        with tempfile.TemporaryDirectory(prefix="radvigil-scale-") as tmp:
            work = Path(tmp)
            incremental = monitor_child(url, home, work)
            console.print(f"[{n:,}] incremental run: {incremental}")
            heavy = in_process(url)  # the full verify leaves the signed checkpoint at the head
            console.print(f"[{n:,}] {heavy}")
            routes = time_routes(url, home, work, filled.sample_ids[0], requests)
            full = full_rerun(url, champ, home, work)
            console.print(f"[{n:,}] full re-run: {full}")
        with psycopg.connect(_libpq(url)) as conn:
            size_mb = (
                conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
            )
        return {
            "predictions": filled.predictions,
            "history_predictions": n,
            "rows_written": filled.rows,
            "fill_s": filled.seconds,
            "fill_rows_per_s": filled.rows / filled.seconds,
            "fill_predictions_per_s": n / filled.seconds,
            "rollup_rebuild_s": filled.rollup_seconds,
            "database_mb": size_mb,
            "incremental_run": incremental,
            "full_rerun": full,
            "routes": routes,
            **heavy,
        }
    finally:
        drop_database(name)


def ratio(results: dict[int, dict[str, Any]], n: int, key: str) -> str:
    """The incremental run's ``key`` at size ``n`` over that at the smallest size."""
    first = results[min(results)]["incremental_run"][key]
    return f"{results[n]['incremental_run'][key] / first:.2f}"


def per_window(result: dict[str, Any]) -> float:
    """Incremental wall time per window judged (new windows + those late labels re-judged):
    how many windows a day completes depends on where the history's last window ended."""
    run = result["incremental_run"]
    return run["wall_s"] / (run["windows"] + run.get("relabelled", 0))


def report(results: dict[int, dict[str, Any]]) -> None:
    sizes = sorted(results)
    head = ["measure", *[f"{n:,}" for n in sizes]]
    first = results[sizes[0]]
    rows = [
        ["fill: rows/s (COPY)", *[f"{results[n]['fill_rows_per_s']:,.0f}" for n in sizes]],
        ["fill: predictions/s", *[f"{results[n]['fill_predictions_per_s']:,.0f}" for n in sizes]],
        [
            "rollup rebuild, in SQL (s)",
            *[fmt(results[n].get("rollup_rebuild_s", float("nan"))) for n in sizes],
        ],
        ["database size (MB)", *[f"{results[n]['database_mb']:,.0f}" for n in sizes]],
        [
            "incremental run: wall (s)",
            *[fmt(results[n]["incremental_run"]["wall_s"]) for n in sizes],
        ],
        ["incremental run: x 10k wall", *[ratio(results, n, "wall_s") for n in sizes]],
        [
            "incremental run: peak RSS (MB)",
            *[fmt(results[n]["incremental_run"]["peak_rss_mb"]) for n in sizes],
        ],
        ["incremental run: x 10k RSS", *[ratio(results, n, "peak_rss_mb") for n in sizes]],
        [
            "incremental run: windows",
            *[str(results[n]["incremental_run"]["windows"]) for n in sizes],
        ],
        [
            "  windows re-judged (late labels)",
            *[str(results[n]["incremental_run"].get("relabelled", "-")) for n in sizes],
        ],
        ["  s per window judged", *[fmt(per_window(results[n])) for n in sizes]],
        [
            "  x 10k per window",
            *[f"{per_window(results[n]) / per_window(first):.2f}" for n in sizes],
        ],
        ["full re-run: wall (s)", *[fmt(results[n]["full_rerun"]["wall_s"]) for n in sizes]],
        [
            "full re-run: peak RSS (MB)",
            *[fmt(results[n]["full_rerun"]["peak_rss_mb"]) for n in sizes],
        ],
        ["audit verify, in process (s)", *[fmt(results[n]["audit_verify_s"]) for n in sizes]],
        ["audit verify ok", *[str(results[n]["audit_ok"]) for n in sizes]],
        [
            "audit verify from checkpoint (s)",
            *[fmt(results[n].get("audit_verify_incremental_s", float("nan"))) for n in sizes],
        ],
        [
            "  records walked (500 labels)",
            *[str(results[n].get("audit_incremental_records", "-")) for n in sizes],
        ],
        ["retrain set build (s)", *[fmt(results[n]["retrain_set_s"]) for n in sizes]],
        ["retrain set cases", *[str(results[n]["retrain_cases"]) for n in sizes]],
    ]
    table("scale: fill, monitors, audit, retraining set", head, rows)
    route_rows = []
    for route in first["routes"]:
        cells = []
        for n in sizes:
            r = results[n]["routes"].get(route)
            cells.append(
                "—" if r is None else f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} ({r['status']})"
            )
        route_rows.append([route, *cells])
    table("scale: p50 / p95 ms (HTTP status) per route", head, route_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--home", type=Path, default=None, help="Reuse a trained bench home.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    quiet_libraries()
    console.print(machine_line())
    results: dict[int, dict[str, Any]] = {}
    previous = args.out / "scale.json"
    if previous.is_file():  # sizes measured by an earlier call are kept beside the new ones
        results = {int(k): v for k, v in json.loads(previous.read_text()).get("sizes", {}).items()}
    with bench_home(args.home, quick=True) as home:
        champ = champion_of(home)
        for n in args.sizes:
            results[n] = measure(n, champ, home, args.requests, args.seed)
            write_json(args.out, "scale.json", {"machine": machine(), "sizes": results})
    report(results)


if __name__ == "__main__":
    main()
