"""Feedback: reviewers' labels for predictions, the ground truth monitoring and retraining use."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from radvigil.errors import NotFoundError
from radvigil.store.db import Database
from radvigil.store.rollups import ROLLUP_FIELDS, move_label
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
            # Row lock: two labels of one prediction move its rollup count one after the other.
            prediction = session.get(PredictionRow, feedback.prediction_id, with_for_update=True)
            if prediction is None:
                raise NotFoundError(f"no prediction with request id {feedback.prediction_id!r}")
            previous = session.scalar(
                select(FeedbackRow.label)
                .where(FeedbackRow.prediction_id == feedback.prediction_id)
                .order_by(FeedbackRow.id.desc())
                .limit(1)
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:  # the prediction vanished between check and insert
                raise NotFoundError(
                    f"no prediction with request id {feedback.prediction_id!r}"
                ) from exc
            move_label(
                session.connection(),
                {c: getattr(prediction, c) for c in ROLLUP_FIELDS},
                previous,
                row.label,
            )
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

    def count(self, *, since: datetime | None = None) -> int:
        """How many labels were given (from a time on), counted by the database."""
        query = select(func.count()).select_from(FeedbackRow)
        if since is not None:
            query = query.where(FeedbackRow.created_at >= since)
        with self.db.session("count feedback") as session:
            return int(session.scalar(query) or 0)

    def labelled_drifters(self) -> builtins.list[tuple[PredictionRow, str]]:
        """Answered cases a clinician was asked to label (routed to review, or offered by a
        site's budgeted queue: the label records its policy) with a stored image, each with its
        latest label, selected by the database: the retraining set, not every labelled case."""
        latest = select(func.max(FeedbackRow.id)).group_by(FeedbackRow.prediction_id)
        t = PredictionRow
        query = (
            select(t, FeedbackRow.label)
            .join(FeedbackRow, FeedbackRow.prediction_id == t.id)
            .where(
                FeedbackRow.id.in_(latest),
                or_(t.routed_to_review.is_(True), FeedbackRow.policy.is_not(None)),
                t.served_by != "shadow",
                t.review_image.is_not(None),
            )
            .options(undefer(t.review_image))
            .order_by(t.id)
        )
        with self.db.session("read labelled drifters") as session:
            rows = session.execute(query).all()
            for row, _ in rows:
                session.expunge(row)
            return [(row, label) for row, label in rows]

    def latest_labels(
        self,
        *,
        model_version: str | None = None,
        since: datetime | None = None,
        prediction_ids: Sequence[str] | None = None,
    ) -> dict[str, str]:
        """Map prediction id to its most recent label (later corrections win).

        Args:
            model_version: only predictions made by this model version.
            since: only predictions made at or after this time.
            prediction_ids: only these predictions (e.g. the page being shown), so the
                cost is theirs, not every label's.
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
        if prediction_ids is not None:
            latest = latest.where(FeedbackRow.prediction_id.in_(list(prediction_ids)))
        query = select(FeedbackRow.prediction_id, FeedbackRow.label).where(
            FeedbackRow.id.in_(latest)
        )
        with self.db.session("read labels") as session:
            return {pid: label for pid, label in session.execute(query)}
