"""Regenerate the processing signatures the harm ranking matches windows against.

Every perturbation of the robustness suite (the default of ``kind: robustness``), at its mild
and strong strength, is applied (seeded per image, as the gate does) to the bundled
development batch's validation films, the reference a bundled model's profile holds. Its
signature is how the median of each processing statistic moves: the log ratio for positive
scales, the difference for bounded ones (:data:`radvigil.monitoring.harm.SIGNATURE_COLUMNS`).
Writes ``src/radvigil/monitoring/signatures.json``.

    .venv/bin/python scripts/processing_signatures.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image as PILImage

from radvigil.data.shifts import apply_shift, get_shift
from radvigil.evaluation.criteria import Robustness
from radvigil.monitoring.features import image_stats_frame
from radvigil.monitoring.harm import SIGNATURES_PATH, median_change

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "bundled"
SEED = 0


def main() -> None:
    frame = pd.read_csv(BUNDLED / "manifest.csv")
    paths = frame.loc[frame["split"] == "val", "path"]
    films = [np.asarray(PILImage.open(BUNDLED / p).convert("L")) for p in paths]
    clean = image_stats_frame(films)
    signatures = []
    for item in Robustness(name="suite").suite:
        for level, params in (("mild", item.mild), ("strong", item.strong)):
            shift = get_shift(item.shift, **params)
            changed = image_stats_frame(
                [apply_shift(x, shift, (SEED, i)) for i, x in enumerate(films)]
            )
            change = median_change(clean, changed)
            signatures.append(
                {
                    "shift": item.shift,
                    "level": level,
                    "params": params,
                    "change": {k: round(v, 4) for k, v in change.items()},
                }
            )
            print(item.shift, level, change)
    source = f"{len(films)} bundled validation films, seed {SEED}"
    body = {"source": source, "signatures": signatures}
    SIGNATURES_PATH.write_text(json.dumps(body, indent=1) + "\n")
    print(f"wrote {SIGNATURES_PATH}")


if __name__ == "__main__":
    main()
