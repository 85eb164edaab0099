"""Feedback: reviewers' labels for predictions, the ground truth monitoring and retraining use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from radvigil.errors import NotFoundError
from radvigil.store.db import Database
from radvigil.store.schemas import FeedbackCreate, FeedbackPublic, utcnow
from radvigil.store.tables import FeedbackRow, PredictionRow


class FeedbackStore:
    """Reads and writes the ``feedback`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, feedback: FeedbackCreate, *, reviewer: str) -> FeedbackPublic:
        """Store a label; ``reviewer`` is the authenticated key's name, never the request's.

        Raises:
            NotFoundError: no prediction has that id (it may still be queued: flush the
                prediction writer and retry).
        """
        row = FeedbackRow(
            prediction_id=feedback.prediction_id,
            label=feedback.label,
            reviewer=reviewer,
            comment=feedback.comment,
            created_at=utcnow(),
            policy=feedback.policy,
        )
        with self.db.session("write feedback", immediate=True) as session:
            if session.get(PredictionRow, feedback.prediction_id) is None:
                raise NotFoundError(f"no prediction with request id {feedback.prediction_id!r}")
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:  # the prediction vanished between check and insert
                raise NotFoundError(
                    f"no prediction with request id {feedback.prediction_id!r}"
                ) from exc
            return FeedbackPublic.model_validate(row)

    def list(
        self,
        *,
        prediction_id: str | None = None,
        since: datetime | None = None,
        limit: int | None = 100,
    ) -> list[FeedbackPublic]:
        """Labels, oldest first, optionally for one prediction or from a time on."""
        query = select(FeedbackRow).order_by(FeedbackRow.id)
        if prediction_id is not None:
            query = query.where(FeedbackRow.prediction_id == prediction_id)
        if since is not None:
            query = query.where(FeedbackRow.created_at >= since)
        with self.db.session("list feedback") as session:
            rows = session.scalars(query.limit(limit)).all()
            return [FeedbackPublic.model_validate(row) for row in rows]

    def latest_labels(
        self, *, model_version: str | None = None, since: datetime | None = None
    ) -> dict[str, str]:
        """Map prediction id to its most recent label (later corrections win).

        Args:
            model_version: only predictions made by this model version.
            since: only predictions made at or after this time.
        """
        latest = (
            select(func.max(FeedbackRow.id))
            .join(PredictionRow, PredictionRow.id == FeedbackRow.prediction_id)
            .group_by(FeedbackRow.prediction_id)
        )
        if model_version is not None:
            latest = latest.where(PredictionRow.model_version == model_version)
        if since is not None:
            latest = latest.where(PredictionRow.created_at >= since)
        query = select(FeedbackRow.prediction_id, FeedbackRow.label).where(
            FeedbackRow.id.in_(latest)
        )
        with self.db.session("read labels") as session:
            return {pid: label for pid, label in session.execute(query)}
