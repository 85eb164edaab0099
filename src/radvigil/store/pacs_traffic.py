"""Per-calling-AE (or pull source) traffic, computed in SQL from ``pacs_instances``.

Counts and times only, keyed by AE title: no UIDs, no patient data. Instances the receiver
refused before spooling them (unparseable, undecodable syntax) never reach the table: they are
counted by ``radvigil_dicom_received_total`` on /metrics.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import case, func, select

from radvigil.store.db import Database
from radvigil.store.tables import PacsInstanceRow


class AeTraffic(BaseModel):
    """What one calling AE sent: studies and instances handled, predicted, refused, last seen."""

    calling_ae: str
    studies: int
    instances: int
    predicted: int
    refused: int
    last_seen: AwareDatetime


def ae_traffic(db: Database) -> list[AeTraffic]:
    """One row per calling AE, busiest first."""
    row = PacsInstanceRow
    query = (
        select(
            row.calling_ae,
            func.count(func.distinct(row.study_key)),
            func.count(),
            func.sum(case((row.state == "predicted", 1), else_=0)),
            func.sum(case((row.state == "refused", 1), else_=0)),
            func.max(row.created_at),  # max() keeps the column's UTC type
        )
        .group_by(row.calling_ae)
        .order_by(func.count().desc(), row.calling_ae)
    )
    with db.session("read PACS traffic") as session:
        return [
            AeTraffic(
                calling_ae=ae,
                studies=int(studies),
                instances=int(instances),
                predicted=int(predicted or 0),
                refused=int(refused or 0),
                last_seen=last,
            )
            for ae, studies, instances, predicted, refused, last in session.execute(query)
        ]
