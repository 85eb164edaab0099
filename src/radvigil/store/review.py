"""The review queue: predictions that need a clinician's label and have none yet."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, func, or_, select

from radvigil.store.db import Database
from radvigil.store.predictions import PredictionStore
from radvigil.store.schemas import PredictionRecord
from radvigil.store.tables import FeedbackRow, PredictionRow


class ReviewQueue:
    """Drifters and low-confidence cases without feedback, most unusual first."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _query(self, site: str | None, max_confidence: float):
        labelled = exists().where(FeedbackRow.prediction_id == PredictionRow.id)
        query = select(PredictionRow).where(
            ~labelled,
            PredictionRow.served_by != "shadow",
            or_(
                PredictionRow.routed_to_review.is_(True), PredictionRow.confidence < max_confidence
            ),
        )
        if site is not None:
            query = query.where(PredictionRow.site == site)
        return query

    def pending(
        self,
        *,
        site: str | None = None,
        max_confidence: float = 0.7,
        limit: int = 50,
        offset: int = 0,
    ) -> list[PredictionRecord]:
        """Cases to review, ordered by OOD score (highest first), then by confidence (lowest)."""
        query = (
            self._query(site, max_confidence)
            .order_by(
                PredictionRow.ood_score.desc().nulls_last(),
                PredictionRow.confidence.asc(),
                PredictionRow.created_at.asc(),
            )
            .limit(limit)
            .offset(offset)
        )
        with self.db.session("read review queue") as session:
            return [PredictionStore._to_record(row) for row in session.scalars(query).all()]

    def size(self, *, site: str | None = None, max_confidence: float = 0.7) -> int:
        query = select(func.count()).select_from(self._query(site, max_confidence).subquery())
        with self.db.session("count review queue") as session:
            return int(session.scalar(query) or 0)

    def unlabelled(self, site: str, *, limit: int = 5000) -> list[PredictionRecord]:
        """The site's served cases without a label (newest first, at most ``limit``), with their
        embeddings: the pool a label-selection policy chooses from."""
        labelled = exists().where(FeedbackRow.prediction_id == PredictionRow.id)
        query = (
            select(PredictionRow)
            .where(~labelled, PredictionRow.served_by != "shadow", PredictionRow.site == site)
            .order_by(PredictionRow.created_at.desc(), PredictionRow.id)
            .limit(limit)
        )
        with self.db.session("read selection pool") as session:
            return [PredictionStore._to_record(row) for row in session.scalars(query).all()]

    def site_labels(
        self, site: str, *, since: datetime | None = None
    ) -> list[tuple[PredictionRecord, str, str | None]]:
        """The site's labelled cases (latest label each, labelled at or after ``since``): the
        prediction, the label and the policy that chose the case."""
        latest = select(func.max(FeedbackRow.id)).group_by(FeedbackRow.prediction_id)
        query = (
            select(PredictionRow, FeedbackRow.label, FeedbackRow.policy)
            .join(FeedbackRow, FeedbackRow.prediction_id == PredictionRow.id)
            .where(FeedbackRow.id.in_(latest), PredictionRow.site == site)
            .order_by(FeedbackRow.id)
        )
        if since is not None:
            query = query.where(FeedbackRow.created_at >= since)
        with self.db.session("read site labels") as session:
            return [
                (PredictionStore._to_record(row), label, policy)
                for row, label, policy in session.execute(query).all()
            ]
