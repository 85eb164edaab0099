"""The demo's steps with the service running: stream, drift, label, retrain, roll out."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pandas as pd
from rich.table import Table

from radvigil.cli.common import console
from radvigil.cli.demo import BUNDLE, DEMO_GATES, SCANNER_CHANGE, Demo, _png, _post_all
from radvigil.data.catalog import DatasetCatalog
from radvigil.data.io import read_image
from radvigil.data.shifts import apply_shift, compose, parse_shift
from radvigil.evaluation import load_criteria
from radvigil.loop.evaluation import score
from radvigil.loop.monitoring import drift_streaks
from radvigil.loop.retrain import retrain
from radvigil.loop.triggers import evaluate_triggers, gather_facts, load_policy
from radvigil.model.config import TrainConfig
from radvigil.registry import Registry
from radvigil.service.background import BackgroundServer

PHASE_A, PHASE_B = 100, 162


def _payloads(frame: pd.DataFrame, shifted: bool) -> list[tuple[str, bytes]]:
    shift = compose(*(parse_shift(s) for s in SCANNER_CHANGE)) if shifted else None
    out = []
    for i, row in enumerate(frame.itertuples()):
        pixels = read_image(BUNDLE / row.path).pixels
        if shift is not None:
            pixels = apply_shift(pixels, shift, seed=i)
        out.append((f"study-{i}.png", _png(pixels)))
    return out


def run_loop(
    demo: Demo,
    app,
    tokens: dict[str, str],
    state: dict,
    registry: Registry,
    catalog: DatasetCatalog,
    stream: pd.DataFrame,
    cfg: TrainConfig,
) -> None:
    admin = {"X-API-Key": tokens["admin"]}
    truth: dict[str, str] = {}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        svc = app.state.radvigil
        console.print(f"service listening on {server.url} (OpenAPI docs at {server.url}/docs)")

        def monitor() -> list[dict]:
            client.post("/v1/monitoring/run", headers=admin).raise_for_status()
            return client.get(
                "/v1/monitoring/alerts", headers=admin, params={"state": "open"}
            ).json()

        def normal_traffic() -> str:
            part = stream.iloc[:PHASE_A]
            outs = _post_all(client, tokens["service"], _payloads(part, False), "streaming")
            truth.update({o["request_id"]: lbl for o, lbl in zip(outs, part["label"], strict=True)})
            svc.writer.flush()
            alerts = monitor()
            return f"{len(outs)} real studies served; open alerts: {len(alerts)}"

        demo.step("3. Serve the champion and stream normal traffic", normal_traffic)

        def scanner_change() -> str:
            part = stream.iloc[PHASE_A : PHASE_A + PHASE_B]
            outs = _post_all(client, tokens["service"], _payloads(part, True), "streaming")
            truth.update({o["request_id"]: lbl for o, lbl in zip(outs, part["label"], strict=True)})
            state["drift_ids"] = [o["request_id"] for o in outs]
            svc.writer.flush()
            alerts = monitor()
            for alert in alerts:
                console.print(
                    f"[bold red]ALERT[/bold red] {alert.get('severity', '')} "
                    f"{alert.get('rule', alert.get('detector', ''))}: "
                    f"{alert.get('message', '')}"
                )
            state["alerts"] = len(alerts)
            drifters = sum(o["routed_to_review"] for o in outs)
            return (
                f"scanner change ({', '.join(SCANNER_CHANGE)}) on {len(outs)} studies; "
                f"{drifters} flagged as drifters; open alerts: {len(alerts)}"
            )

        demo.step("4. Inject a scanner change", scanner_change)

        def label() -> str:
            queue = client.get(
                "/v1/review", headers={"X-API-Key": tokens["clinician"]}, params={"limit": 500}
            ).json()
            labelled = 0
            for item in queue["items"]:
                label = truth.get(item["request_id"])
                if label is None:
                    continue
                client.post(
                    "/v1/feedback",
                    headers={"X-API-Key": tokens["clinician"]},
                    json={
                        "prediction_id": item["request_id"],
                        "label": label,
                        "comment": "demo: ground truth standing in for a clinician",
                    },
                ).raise_for_status()
                labelled += 1
            return (
                f"{labelled} of {queue['total']} queued cases labelled "
                "[bold](simulated clinicians: labels come from ground truth)[/bold]"
            )

        demo.step("5. Review queue: label the drifters", label)

        def trigger() -> str:
            mv = registry.resolve(f"{state['name']}@champion")
            streaks = drift_streaks(svc.db, state["name"], str(mv.version))
            facts = gather_facts(svc.predictions, svc.feedback, str(mv.version), None, streaks)
            results = evaluate_triggers(
                load_policy(demo.settings.home_dir / "triggers.yaml"), facts
            )
            for r in results:
                console.print(f"  {'FIRES' if r.fired else 'quiet'}  {r.name}: {r.reason}")
            fired = [r.name for r in results if r.fired]
            state["triggered"] = bool(fired)
            return ("retraining triggered by " + ", ".join(fired)) if fired else "no trigger fired"

        demo.step("6. Check retraining triggers", trigger)
        if not state["triggered"]:
            _summary(demo, state, server.url)
            return

        def retrain_step() -> str:
            champion = registry.load(f"{state['name']}@champion")

            def record(action: str, actor: str, version: str, details: dict) -> None:
                svc.audit.append(
                    actor=actor,
                    action=action,
                    object_type="model_version",
                    object_id=f"{state['name']}/{version}",
                    details=details,
                )

            outcome = retrain(
                champion,
                svc.predictions,
                svc.feedback,
                catalog,
                registry,
                load_criteria(DEMO_GATES),
                demo.settings.reports_dir,
                record,
                "demo-admin",
                seed=demo.settings.seed,
            )
            state["v2"], state["gate2"], state["retrain"] = (
                outcome.version,
                outcome.verdict,
                outcome,
            )
            table = Table("result", "gate", "finding", "value", "95% CI", "rule")
            from radvigil.evaluation import verdict_table_rows

            for row in verdict_table_rows(outcome.verdict):
                table.add_row(
                    row["result"],
                    row["gate"],
                    row["finding"] or row["subgroup"],
                    row["value"],
                    row["95% CI"],
                    row["rule"],
                )
            console.print(table)
            return (
                f"challenger {state['name']}/{outcome.version} on {outcome.data_version} "
                f"(+{outcome.feedback_cases} labelled drifters): {outcome.verdict.summary()}"
            )

        demo.step("7. Retrain and gate the challenger", retrain_step)
        if not state["gate2"].passed:
            console.print("[red]the challenger failed its gates: it is not rolled out[/red]")
            _summary(demo, state, server.url)
            return

        def shadow() -> str:
            client.post(
                "/v1/admin/rollout/shadow",
                headers=admin,
                json={"reason": "demo: compare on live traffic"},
            ).raise_for_status()
            svc.models.refresh()
            part = stream.iloc[PHASE_A : PHASE_A + 60]
            outs = _post_all(client, tokens["service"], _payloads(part, True), "shadowing")
            for o, lbl in zip(outs, part["label"], strict=True):
                client.post(
                    "/v1/feedback",
                    headers={"X-API-Key": tokens["clinician"]},
                    json={"prediction_id": o["request_id"], "label": lbl},
                ).raise_for_status()
            svc.writer.flush()
            time.sleep(0.5)
            svc.writer.flush()
            report = client.get("/v1/admin/rollout/shadow-report", headers=admin).json()
            state["shadow"] = report
            return (
                f"{report['pairs']} shadowed studies, agreement {report['agreement']:.2f}; "
                f"labelled accuracy champion {report['champion_accuracy']:.2f} vs "
                f"challenger {report['challenger_accuracy']:.2f}"
            )

        demo.step("8. Shadow the challenger", shadow)

        def promote() -> str:
            client.post(
                "/v1/admin/rollout/promote",
                headers=admin,
                json={"reason": "demo: gates passed and shadow agrees"},
            ).raise_for_status()
            served = client.get("/v1/model", headers=admin).json()["champion"]["version"]
            return f"champion is now version {served} (previous kept as @previous)"

        demo.step("9. Promote", promote)

        def before_after() -> str:
            outcome = state["retrain"]
            version = catalog.load(outcome.data_version)
            held = version.frame[
                (version.frame["split"] == "test")
                & (version.frame["source_dataset"] == "clinician_feedback")
            ]
            from radvigil.data.manifest import DatasetVersion

            subset = DatasetVersion(held.reset_index(drop=True), version.root)
            rows = []
            for tag in ("v1", "v2"):
                loaded = registry.load(f"{state['name']}/{state[tag]}")
                scored = score(loaded, subset, "test")
                predicted = np.array(loaded.card["task"]["classes"])[scored.probs.argmax(1)]
                truth_arr = np.array(scored.labels)
                accuracy = float((predicted == truth_arr).mean())
                k = loaded.card["task"]["classes"].index("pneumonia")
                positive = truth_arr == "pneumonia"
                flagged = scored.probs[:, k] >= loaded.card["thresholds"]["pneumonia"]
                sens = float(flagged[positive].mean()) if positive.any() else float("nan")
                spec = float((~flagged[~positive]).mean()) if (~positive).any() else float("nan")
                rows.append((tag, accuracy, sens, spec))
            state["before_after"] = rows
            table = Table(
                f"held-out drift-era cases (n={len(held)})",
                "accuracy",
                "sensitivity",
                "specificity",
            )
            for tag, acc, sens, spec in rows:
                table.add_row(f"version {state[tag]}", f"{acc:.3f}", f"{sens:.3f}", f"{spec:.3f}")
            console.print(table)
            return f"accuracy {rows[0][1]:.3f} -> {rows[1][1]:.3f} on held-out drift-era cases"

        demo.step("10. Drift-era cases before and after", before_after)
        _summary(demo, state, server.url)


def _summary(demo: Demo, state: dict, url: str) -> None:
    table = Table(title="radvigil demo summary")
    table.add_column("step")
    table.add_column("outcome")
    table.add_column("time", justify="right")
    for step in demo.steps:
        table.add_row(step.name, step.outcome, f"{step.seconds:.1f} s")
    console.print(table)
    home = demo.settings.home_dir
    console.print(
        f"lineage: radvigil models show {state['name']}@champion\n"
        f"dashboard: run `radvigil serve` and open http://127.0.0.1:8000/dashboard "
        f"(this run's server at {url} stops with the demo)\n"
        f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'} "
        f"--port 5000, then http://127.0.0.1:5000\n"
        f"API keys for the dashboard: radvigil keys create --name me --role admin"
    )
