"""Automatic caveats: warnings a reader needs before trusting the numbers of a report.

The one checked here is confounding of source and label. When one source (hospital, dataset)
supplies nearly all images of one class, e.g. paediatric normals and adult tuberculosis cases, a
model can score well by recognising the source rather than the disease.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from radvigil.evaluation.subgroups import group_labels

CONFOUNDER_COLUMNS = ("source_dataset", "site")
DEFAULT_MIN_CRAMERS_V = 0.5


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table (0: independent, 1: one determines the other)."""
    total = table.sum()
    if total == 0 or min(table.shape) < 2:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / total
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (total * (min(table.shape) - 1))))


def confounding_caveats(
    frame: pd.DataFrame | None,
    labels: Sequence[str],
    columns: Sequence[str] = CONFOUNDER_COLUMNS,
    min_cramers_v: float = DEFAULT_MIN_CRAMERS_V,
) -> list[str]:
    """Plain-language caveats for each column in ``columns`` strongly associated with the label."""
    if frame is None:
        return []
    caveats = []
    for column in columns:
        if column not in frame.columns:
            continue
        table = pd.crosstab(group_labels(frame[column]).to_numpy(), np.asarray(labels))
        if table.shape[0] < 2 or table.shape[1] < 2:
            continue
        strength = cramers_v(table.to_numpy(dtype=float))
        if strength < min_cramers_v:
            continue
        mix = "; ".join(
            f"{group}: " + ", ".join(f"{n} {label}" for label, n in row.items() if n)
            for group, row in table.iterrows()
        )
        caveats.append(
            f"Source and label are confounded in '{column}' (Cramér's V = {strength:.2f}; "
            f"{mix}). The model may recognise the source (for example adult versus child "
            "images, or one hospital's equipment) instead of the finding, so these metrics can "
            "overstate how it will perform where sources are mixed differently."
        )
    return caveats
