"""Per-calling-AE (or pull source) traffic: intake counts, and what the worker made of them.

``pacs_intake_counts`` holds what arrived (stored for prediction, ignored as another SOP class,
refused at intake), added by the node each tick; what the worker did with the stored ones
(studies, predicted, refused) is computed in SQL from ``pacs_instances``. Counts, times and AE
titles only: no UIDs, no patient data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import case, func, select

from radvigil.store.db import Database
from radvigil.store.tables import IntakeCountRow, PacsInstanceRow


class AeTraffic(BaseModel):
    """What one calling AE sent and what became of it."""

    calling_ae: str
    received: int = 0
    ignored: int = 0
    refused_at_intake: int = 0
    studies: int = 0
    predicted: int = 0
    refused: int = 0
    last_seen: AwareDatetime | None = None


def add_intake_counts(db: Database, counts: Mapping[tuple[str, str], tuple[int, datetime]]) -> None:
    """Add drained intake counts ((AE, outcome) -> (instances, last seen)) in one transaction."""
    if not counts:
        return
    with db.session("count PACS intake", immediate=True) as session:
        for (ae, outcome), (n, seen) in counts.items():
            row = session.get(IntakeCountRow, (ae, outcome))
            if row is None:
                session.add(
                    IntakeCountRow(calling_ae=ae, outcome=outcome, instances=n, last_seen=seen)
                )
            else:
                row.instances += n
                row.last_seen = max(row.last_seen, seen)


def ae_traffic(db: Database) -> list[AeTraffic]:
    """One row per calling AE, most received first."""
    handled = PacsInstanceRow
    worker = select(
        handled.calling_ae,
        func.count(func.distinct(handled.study_key)),
        func.sum(case((handled.state == "predicted", 1), else_=0)),
        func.sum(case((handled.state == "refused", 1), else_=0)),
        func.max(handled.created_at),  # max() keeps the column's UTC type
    ).group_by(handled.calling_ae)
    rows: dict[str, AeTraffic] = {}
    with db.session("read PACS traffic") as session:
        for ae, outcome, n, seen in session.execute(
            select(
                IntakeCountRow.calling_ae,
                IntakeCountRow.outcome,
                IntakeCountRow.instances,
                IntakeCountRow.last_seen,
            )
        ):
            row = rows.setdefault(ae, AeTraffic(calling_ae=ae))
            row.received += n
            row.ignored += n if outcome == "ignored" else 0
            row.refused_at_intake += n if outcome == "refused" else 0
            row.last_seen = seen if row.last_seen is None else max(row.last_seen, seen)
        for ae, studies, predicted, refused, last in session.execute(worker):
            row = rows.setdefault(ae, AeTraffic(calling_ae=ae))
            row.studies, row.predicted, row.refused = (
                int(studies),
                int(predicted or 0),
                int(refused or 0),
            )
            row.last_seen = last if row.last_seen is None else max(row.last_seen, last)
    return sorted(rows.values(), key=lambda r: (-r.received, -r.predicted, r.calling_ae))
