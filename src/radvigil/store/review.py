"""The review queue: predictions that need a clinician's label and have none yet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnClause,
    SQLColumnExpression,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite

from radvigil.errors import NotFoundError
from radvigil.store.db import Database
from radvigil.store.predictions import PredictionStore
from radvigil.store.schemas import PredictionRecord, utcnow
from radvigil.store.tables import FeedbackRow, LabelOfferRow, PredictionRow

# Most unusual first (OOD scores are distances, never negative); an unscored case after
# every scored one. Spelled exactly as the index
# ``ix_predictions_review_order`` (migration 0010), so the database reads the queue in order.
REVIEW_ORDER: ColumnClause[Any] = literal_column("(-coalesce(predictions.ood_score, -1))")
COUNT_CAP = 10_000  # the queue's size is counted up to here ("10,000+"), not over the history


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
        after: str | None = None,
    ) -> list[PredictionRecord]:
        """Cases to review, ordered by OOD score (highest first, none last), then by confidence
        (lowest), time and id; ``after`` (a request id of the previous page) continues by key.

        Raises:
            NotFoundError: when ``after`` names no stored prediction.
        """
        key = _order_key()
        query = self._query(site, max_confidence)
        with self.db.session("read review queue") as session:
            if after is not None:
                last = session.execute(select(*key).where(PredictionRow.id == after)).one_or_none()
                if last is None:
                    raise NotFoundError(f"no prediction with request id {after!r} to page after")
                query = query.where(tuple_(*key) > tuple_(*last))
            rows = session.scalars(query.order_by(*key).limit(limit)).all()
            return [PredictionStore._to_record(row) for row in rows]

    def size(
        self, *, site: str | None = None, max_confidence: float = 0.7, cap: int | None = None
    ) -> int:
        """How many cases wait; with ``cap``, counted up to ``cap`` only (a page shows
        "10,000+" rather than counting a year of history on every view)."""
        waiting = self._query(site, max_confidence).with_only_columns(PredictionRow.id)
        if cap is not None:
            waiting = waiting.limit(cap)
        query = select(func.count()).select_from(waiting.subquery())
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

    def record_offers(self, site: str, offers: Sequence[tuple[str, str, str | None]]) -> None:
        """Keep (prediction id, policy, why) of the cases a site's budgeted queue offers; the
        first offer of a case stands (one statement, safe under concurrent queue reads)."""
        if not offers:
            return
        insert = postgresql.insert if self.db.backend == "postgresql" else sqlite.insert
        now = utcnow()
        stmt = insert(LabelOfferRow).on_conflict_do_nothing(index_elements=["prediction_id"])
        rows = [
            {"prediction_id": i, "site": site, "policy": p, "why": w, "offered_at": now}
            for i, p, w in offers
        ]
        with self.db.transaction("record label offers") as conn:
            conn.execute(stmt, rows)

    def offered_policy(self, prediction_id: str) -> str | None:
        """The policy that first offered this case in its site's budgeted queue, if any did."""
        query = select(LabelOfferRow.policy).where(LabelOfferRow.prediction_id == prediction_id)
        with self.db.session("read a label offer") as session:
            return session.scalar(query)


def _order_key() -> tuple[SQLColumnExpression[Any], ...]:
    """The queue's order as one ascending key (most unusual first), unique by the id, so a
    page continues after its last item by comparing keys (keyset pagination)."""
    return (
        REVIEW_ORDER,
        PredictionRow.confidence,
        PredictionRow.created_at,
        PredictionRow.id,
    )
