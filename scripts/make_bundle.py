"""Rebuild ``data/bundled`` from the full shared data (run once by maintainers, not by users).

Takes a seeded, patient-disjoint, class-stratified subset of Kermany that keeps the original
splits, copies the files unchanged (so their sha256 still matches the shared manifest), and
copies the small DICOM radiographs. Usage: ``python scripts/make_bundle.py ../shared/data``.
"""

from __future__ import annotations

import csv
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

PER_SPLIT = {"train": 350, "val": 130, "test": 125}  # images per class in each split
STREAM_PER_CLASS = 150  # held-back "production traffic" for the demo, from the original test split
KERMANY = "kermany_guangzhou_pediatric_cxr"
DICOMS = ("RG1_chest_small_512.dcm", "RG1_J2KI.dcm", "RG3_J2KI.dcm")
OUT = Path(__file__).resolve().parents[1] / "data" / "bundled"


def main(shared: Path) -> None:
    rows = [
        r
        for r in csv.DictReader((shared / "cxr" / "manifest.csv").open())
        if r["source_dataset"] == KERMANY
    ]
    by_key: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_key[(row["split"], row["label"])][row["patient_id"]].append(row)
    rng = random.Random(42)
    chosen: list[dict] = []
    used: set[str] = set()
    # Kermany's test split reuses train's patient numbering; skipping ids already taken keeps
    # the bundle patient-disjoint even if those numbers are the same people.
    for split, label in sorted(by_key, key=lambda k: (list(PER_SPLIT).index(k[0]), k[1])):
        patients = by_key[(split, label)]
        ids = sorted(patients)
        rng.shuffle(ids)
        picked: list[dict] = []
        for pid in ids:  # whole patients only, so splits stay patient-disjoint
            if len(picked) >= PER_SPLIT[split]:
                break
            if pid in used:
                continue
            used.add(pid)
            picked.extend(patients[pid])
        chosen.extend(picked)
    stream = _stream(by_key, used, rng)
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "dicom").mkdir(parents=True)
    for row in chosen:
        rel = Path(row["path"]).relative_to("cxr")
        (OUT / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared / row["path"], OUT / rel)
        row["path"] = rel.as_posix()
    with (OUT / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
        writer.writeheader()
        writer.writerows(sorted(chosen, key=lambda r: r["path"]))
    for row in stream:
        rel = Path("stream") / Path(row["path"]).relative_to("cxr/kermany/test")
        (OUT / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared / row["path"], OUT / rel)
        row["path"] = rel.as_posix()
    with (OUT / "stream.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(stream[0]))
        writer.writeheader()
        writer.writerows(sorted(stream, key=lambda r: r["path"]))
    for name in DICOMS:
        shutil.copy2(shared / "dicom" / name, OUT / "dicom" / name)
    shutil.copy2(shared / "dicom" / "LICENSE.pydicom-data.txt", OUT / "dicom")
    print(f"bundled {len(chosen)} + {len(stream)} stream Kermany images, {len(DICOMS)} DICOM files")


def _stream(by_key: dict, used: set[str], rng: random.Random) -> list[dict]:
    """Unused test-split patients, kept out of every split: the demo's production traffic."""
    rows: list[dict] = []
    for label in ("normal", "pneumonia"):
        patients = by_key[("test", label)]
        ids = sorted(pid for pid in patients if pid not in used)
        rng.shuffle(ids)
        picked: list[dict] = []
        for pid in ids:
            if len(picked) >= STREAM_PER_CLASS:
                break
            used.add(pid)
            picked.extend(patients[pid])
        rows.extend(picked)
    return rows


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
