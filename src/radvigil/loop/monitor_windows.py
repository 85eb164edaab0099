"""Between the store and the monitors: stored predictions as windows, reports as stored rows.

Stored predictions already hold what the monitors compare: the embedding reduced by the
serving version's profile, its OOD score, the probabilities, the image statistics and the
metadata. Labels come from clinicians' feedback (-1 where a case is not labelled yet).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from radvigil.monitoring import (
    STAT_COLUMNS,
    UNLABELLED,
    Alert,
    AlertState,
    DetectorResult,
    ReferenceProfile,
    WindowData,
    WindowReport,
)
from radvigil.store import AlertPublic, MonitorResultCreate, MonitorResultPublic, PredictionRecord
from radvigil.store.monitor_results import OVERALL, WindowKind

# Metadata columns a stored prediction carries, by the name the profile knows them under.
RECORD_METADATA = ("site", "view_position")


def window_data(
    records: Sequence[PredictionRecord], profile: ReferenceProfile, labels: Mapping[str, str]
) -> WindowData:
    """The monitors' columns for ``records`` (in their order), aligned with the profile's."""
    classes = list(profile.class_names)
    index = {name: i for i, name in enumerate(classes)}
    ref = profile.reference
    stat_columns = list(ref.stats.columns) if ref.stats is not None else list(STAT_COLUMNS)
    embeddings = [r.embedding for r in records]
    dims = {len(e) for e in embeddings if e is not None}
    scores = [r.ood_score for r in records]
    metadata = None
    if ref.metadata is not None:
        metadata = pd.DataFrame(
            {
                column: [
                    getattr(r, column, None) if column in RECORD_METADATA else None for r in records
                ]
                for column in ref.metadata.columns
            }
        )
    return WindowData(
        embeddings=np.asarray(embeddings, dtype=np.float32)
        if records and None not in embeddings and len(dims) == 1
        else None,
        probs=np.array([[r.probabilities[c] for c in classes] for r in records]).reshape(
            len(records), len(classes)
        ),
        labels=np.array([index.get(labels.get(r.id, ""), UNLABELLED) for r in records]),
        stats=pd.DataFrame(
            [[_number(r.image_stats.get(c)) for c in stat_columns] for r in records],
            columns=stat_columns,
        ),
        metadata=metadata,
        ood_scores=np.asarray(scores, dtype=np.float64) if None not in scores else None,
        timestamps=np.array(
            [r.created_at.astimezone(UTC).replace(tzinfo=None) for r in records],
            dtype="datetime64[ns]",
        ),
    )


def group_key(group: str | None) -> str:
    """The stored name of a window group: ``all`` for the overall windows."""
    return group or OVERALL


def window_label(start: datetime, end: datetime) -> str:
    """A window's name in reports and alerts: its time span."""
    return f"{start.isoformat()}/{end.isoformat()}"


def in_group(record: object, group: str) -> bool:
    """Whether a prediction (a record or a key) belongs to a stored window group (``all`` or
    ``column=value``)."""
    if group == OVERALL:
        return True
    column, _, value = group.partition("=")
    return str(getattr(record, column, None)) == value


def slug(text: str) -> str:
    """``site=ward 3`` -> ``site-ward-3``: safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-") or "window"


def to_results(
    report: WindowReport,
    *,
    model_name: str,
    model_version: str,
    kind: WindowKind,
    start: datetime,
    end: datetime,
) -> list[MonitorResultCreate]:
    """One row per detector of a window report, JSON-safe (no NaN or infinity)."""
    rows = []
    for result in report.results:
        details = clean_json(result.details)
        for name in ("statistic", "p_value", "threshold", "effect_size"):
            value = getattr(result, name)
            if value is not None and not math.isfinite(value):
                details[f"{name}_raw"] = str(value)  # e.g. "inf": kept, but not as a number
        rows.append(
            MonitorResultCreate(
                model_name=model_name,
                model_version=model_version,
                window_kind=kind,
                window_start=start,
                window_end=end,
                n=report.size,
                group=group_key(report.group),
                detector=result.name,
                statistic=_finite(result.statistic),
                p_value=_finite(result.p_value),
                threshold=_finite(result.threshold),
                threshold_source=result.threshold_source,
                drift=result.drift,
                effect_size=_finite(result.effect_size),
                vetoed=result.vetoed,
                skipped=result.skipped,
                details={
                    **details,
                    "n_reference": result.n_reference,
                    "n_window": result.n_window,
                },
            )
        )
    return rows


def to_reports(rows: Sequence[MonitorResultPublic]) -> list[WindowReport]:
    """Stored rows back as window reports, one per window, in the order of the rows' windows."""
    windows: dict[tuple[str, datetime, datetime], list[MonitorResultPublic]] = {}
    for row in rows:
        windows.setdefault((row.group, row.window_start, row.window_end), []).append(row)
    reports = []
    for (group, start, end), found in windows.items():
        reports.append(
            WindowReport(
                window=window_label(start, end),
                group=None if group == OVERALL else group,
                start=start,
                end=end,
                size=found[0].n,
                results=[
                    DetectorResult(
                        name=r.detector,
                        statistic=r.statistic,
                        p_value=r.p_value,
                        threshold=r.threshold,
                        threshold_source=r.threshold_source,
                        drift=r.drift,
                        effect_size=r.effect_size,
                        n_reference=int(r.details.get("n_reference", 0) or 0),
                        n_window=r.n,
                        details=r.details,
                        vetoed=r.vetoed,
                        skipped=r.skipped,
                    )
                    for r in found
                ],
            )
        )
    return reports


def to_alert(stored: AlertPublic) -> Alert:
    """A stored alert as the monitoring library's alert (for rules and state changes)."""
    return Alert(
        rule=stored.rule,
        detector=stored.detector,
        group=None if stored.group == OVERALL else stored.group,
        severity=stored.severity,
        state=AlertState(stored.state),
        windows=[],
        statistic=stored.statistic,
        threshold=stored.threshold,
        message=stored.message,
        acknowledged_by=stored.acknowledged_by,
        resolved_by=stored.resolved_by,
        resolution=stored.reason,
        changed_at=stored.updated_at,
    )


def clean_json(value: Any) -> Any:
    """Plain JSON: NumPy scalars and arrays as Python values, NaN and infinity as None."""
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _number(value: object) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else np.nan
    )
