"""Rebuild ``data/bundled`` from the full shared data (run once by maintainers, not by users).

Takes a seeded, patient-disjoint, class-stratified subset of Kermany, copies the files unchanged
(so their sha256 still matches the shared manifest), and copies the small DICOM radiographs.

Kermany's two folders are two acquisition batches: a model trained on the train folder loses
much of its specificity on the test folder. The bundle keeps them apart so the demo can show
that real shift: ``manifest.csv`` (train, val and test splits) comes from the train-folder
batch only, like a vendor's development data, and ``stream.csv`` holds the production traffic:
held-back train-folder patients (the ``train-folder`` batch, before the change) and test-folder
patients (the ``test-folder`` batch, the site's other acquisition). Every row names its batch
in ``acquisition_batch``. Usage: ``python scripts/make_bundle.py ../shared/data``.
"""

from __future__ import annotations

import csv
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

PER_SPLIT = {"train": 350, "val": 130}  # images per class in each split, from the same folders
TEST_FOLDER_PER_CLASS = (125, 150)  # two draws of test-folder patients (kept from earlier bundles)
DEV_TEST_PER_CLASS = 125  # the test split: held-back train-folder patients
DEV_STREAM_PER_CLASS = 60  # traffic before the change: more held-back train-folder patients
KERMANY = "kermany_guangzhou_pediatric_cxr"
DICOMS = ("RG1_chest_small_512.dcm", "RG1_J2KI.dcm", "RG3_J2KI.dcm")
OUT = Path(__file__).resolve().parents[1] / "data" / "bundled"
BATCH = {"train": "train-folder", "val": "train-folder", "test": "test-folder"}
DEV_TEST_ORIGIN = "derived: patient-grouped hold-out of original train (same batch), seed 42"

PatientIndex = dict[tuple[str, str], dict[str, list[dict]]]


def main(shared: Path) -> None:
    rows = [
        r
        for r in csv.DictReader((shared / "cxr" / "manifest.csv").open())
        if r["source_dataset"] == KERMANY
    ]
    by_key: PatientIndex = defaultdict(lambda: defaultdict(list))
    for row in rows:
        row["acquisition_batch"] = BATCH[row["split"]]
        by_key[(row["split"], row["label"])][row["patient_id"]].append(row)
    rng = random.Random(42)
    used: set[str] = set()
    # Kermany's test folder reuses train's patient numbering; skipping ids already taken keeps
    # the bundle patient-disjoint even if those numbers are the same people. The draws run in
    # the order earlier bundles used, so the files they share stay the same.
    chosen = [
        row
        for split in PER_SPLIT
        for label in ("normal", "pneumonia")
        for row in _patients(by_key[(split, label)], PER_SPLIT[split], used, rng)
    ]
    site = [
        row
        for count, unused_only in zip(TEST_FOLDER_PER_CLASS, (False, True), strict=True)
        for label in ("normal", "pneumonia")
        for row in _patients(by_key[("test", label)], count, used, rng, unused_only)
    ]
    dev_test = [
        {**row, "split": "test", "split_origin": DEV_TEST_ORIGIN}
        for label in ("normal", "pneumonia")
        for row in _patients(by_key[("train", label)], DEV_TEST_PER_CLASS, used, rng)
    ]
    dev_stream = [
        row
        for label in ("normal", "pneumonia")
        for row in _patients(by_key[("train", label)], DEV_STREAM_PER_CLASS, used, rng)
    ]
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "dicom").mkdir(parents=True)
    _write(shared, chosen + dev_test, OUT / "manifest.csv")
    _write(shared, dev_stream + site, OUT / "stream.csv")
    for name in DICOMS:
        shutil.copy2(shared / "dicom" / name, OUT / "dicom" / name)
    shutil.copy2(shared / "dicom" / "LICENSE.pydicom-data.txt", OUT / "dicom")
    print(
        f"bundled {len(chosen) + len(dev_test)} Kermany images in the splits, "
        f"{len(dev_stream)} + {len(site)} stream images (train / test folder), "
        f"{len(DICOMS)} DICOM files"
    )


def _patients(
    patients: dict[str, list[dict]],
    count: int,
    used: set[str],
    rng: random.Random,
    unused_only: bool = False,
) -> list[dict]:
    """Whole unused patients, in seeded order, until ``count`` images (splits stay disjoint).
    ``unused_only`` shuffles only the ids not yet taken (how earlier bundles drew the stream)."""
    ids = sorted(pid for pid in patients if not (unused_only and pid in used))
    rng.shuffle(ids)
    picked: list[dict] = []
    for pid in ids:
        if len(picked) >= count:
            break
        if pid in used:
            continue
        used.add(pid)
        picked.extend(patients[pid])
    return picked


def _write(shared: Path, rows: list[dict], manifest: Path) -> None:
    """Copy each file under its Kermany folder and write the manifest sorted by path."""
    for row in rows:
        rel = Path(row["path"]).relative_to("cxr")
        (OUT / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared / row["path"], OUT / rel)
        row["path"] = rel.as_posix()
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
