"""PACS throughput: studies per minute and C-STORE-to-SR-in-Orthanc latency, 1 and 4 senders.

A real Orthanc (Debian's, DICOMweb plugin, authentication on, as the tests start it) receives
the results; a real radvigil DICOM node (receiver, study worker, outbox; the service's prediction
path with a fast trained model) receives the studies. Each sender is a thread that C-STOREs
one-instance CR studies (the bundled chest radiograph with fresh UIDs) to the receiver, one
association per study, one after the other. A study's latency runs from the moment its sender
opened the association to the moment Orthanc answered the C-STORE of its SR with success
(``pacs_outbox.delivered_at``), so it includes the quiet period, the prediction, the SR and the
Grad-CAM Secondary Capture and the delivery. Prints a table and writes ``pacs_throughput.json``
(render it with ``scripts/results_pages.py``).

    python -m bench.pacs_throughput [--studies 12] [--senders 1 4] [--quiet 0.5] [--home DIR]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE
from sqlalchemy import select
from tests.orthanc import Orthanc  # the tests' Orthanc launcher: the same PACS set-up

from bench import common
from radvigil.config import Settings
from radvigil.pacs.node import PacsNode, running_node
from radvigil.pacs.spool import uid_key
from radvigil.stack.processes import free_port
from radvigil.store.tables import OutboxRow, PacsInstanceRow

RADVIGIL_AE = "RADVIGIL"
SOURCE = common.BUNDLED / "dicom" / "RG1_chest_small_512.dcm"
DRAIN_TIMEOUT_S = 900.0


def new_study(template: pydicom.Dataset) -> tuple[pydicom.Dataset, str]:
    """The template with fresh study, series and instance UIDs; the dataset and its study UID."""
    ds = copy.deepcopy(template)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds, str(ds.StudyInstanceUID)


def send(port: int, ds: pydicom.Dataset) -> None:
    """One association, one C-STORE, release: a modality sending one study."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=RADVIGIL_AE)
    if not assoc.is_established:
        raise RuntimeError("the receiver refused the association")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    if int(getattr(status, "Status", -1)) != 0:
        raise RuntimeError(f"C-STORE status {status}")


def sr_delivered(node: PacsNode, study_keys: set[str]) -> dict[str, datetime]:
    """When each study's SR was stored in Orthanc (outbox delivered_at), by study key."""
    query = (
        select(PacsInstanceRow.study_key, OutboxRow.delivered_at)
        .join(OutboxRow, OutboxRow.prediction_id == PacsInstanceRow.prediction_id)
        .where(OutboxRow.kind == "sr", OutboxRow.state == "delivered")
    )
    with node.state.db.session("read SR deliveries") as session:
        rows = session.execute(query).all()
    return {key: when for key, when in rows if key in study_keys and when is not None}


def run(node: PacsNode, port: int, senders: int, studies: int) -> dict[str, Any]:
    """``studies`` studies split over ``senders`` concurrent senders; waits for every SR."""
    template = pydicom.dcmread(SOURCE)
    template.StudyDate = datetime.now(UTC).strftime("%Y%m%d")
    batches: list[list[tuple[pydicom.Dataset, str]]] = [[] for _ in range(senders)]
    for i in range(studies):
        batches[i % senders].append(new_study(template))
    started: dict[str, float] = {}
    errors: list[BaseException] = []

    def sender(batch: list[tuple[pydicom.Dataset, str]]) -> None:
        for ds, study_uid in batch:
            started[uid_key(study_uid)] = time.time()
            try:
                send(port, ds)
            except (RuntimeError, OSError) as exc:
                errors.append(exc)

    threads = [threading.Thread(target=sender, args=(b,)) for b in batches]
    begin = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = set(started)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    done = sr_delivered(node, keys)
    while len(done) < len(keys) - len(errors) and time.monotonic() < deadline:
        time.sleep(0.5)
        done = sr_delivered(node, keys)
    latencies = np.array([done[k].timestamp() - started[k] for k in done])
    wall = max(w.timestamp() for w in done.values()) - begin if done else float("nan")
    return {
        "senders": senders,
        "studies": studies,
        "delivered": len(done),
        "send_errors": len(errors),
        "wall_s": wall,
        "studies_per_min": 60 * len(done) / wall if done else 0.0,
        "p50_s": float(np.percentile(latencies, 50)) if done else None,
        "p95_s": float(np.percentile(latencies, 95)) if done else None,
        "max_s": float(latencies.max()) if done else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=12, help="studies per run")
    parser.add_argument("--senders", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--quiet", type=float, default=0.5, help="RADVIGIL_DICOM_QUIET_SECONDS")
    parser.add_argument("--home", type=Path, default=None, help="reuse a trained home")
    parser.add_argument("--quick", action="store_true", help="train 1 epoch on 128 images")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    rows = []
    with (
        common.bench_home(args.home, quick=args.quick) as home,
        tempfile.TemporaryDirectory(prefix="radvigil-pacs-bench-") as tmp,
    ):
        orthanc = Orthanc(Path(tmp) / "orthanc")
        orthanc.start()
        try:
            port = free_port()
            settings = Settings(
                home=Path(tmp) / "node",
                dicom_ae_title=RADVIGIL_AE,
                dicom_port=port,
                dicom_quiet_seconds=args.quiet,
                pacs_send="cstore",
                pacs_ae_title=orthanc.aet,
                pacs_port=orthanc.dicom_port,
                model_name=common.MODEL_NAME,
                registry_trust="off",  # the bench model has no signed gate record (as in tests)
            )
            with running_node(settings, home.registry) as node:
                run(node, port, 1, 1)  # warm-up: model load, first ONNX and Grad-CAM calls
                for senders in args.senders:
                    rows.append(run(node, port, senders, args.studies))
            with orthanc.client() as client:
                stats = client.get("/statistics").json()
            if home.trained_seconds is None:
                model = f"the champion reused from --home {args.home}"
            else:
                model = "1 epoch on 128 images" if args.quick else "configs/fast.yaml"
        finally:
            orthanc.remove()
    common.table(
        f"PACS throughput: C-STORE in, SR + SC back to Orthanc (quiet period {args.quiet} s)",
        ["senders", "studies", "delivered", "wall (s)", "studies/min", "p50 (s)", "p95 (s)"],
        [
            [
                r["senders"],
                r["studies"],
                r["delivered"],
                r["wall_s"],
                r["studies_per_min"],
                r["p50_s"],
                r["p95_s"],
            ]
            for r in rows
        ],
    )
    common.write_json(
        args.out,
        "pacs_throughput.json",
        {
            "quiet_s": args.quiet,
            "quick_model": args.quick,
            "model": model,
            "orthanc_instances": stats.get("CountInstances"),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
