"""Predictions: idempotent bulk insert (the request id is the key) and filtered reads."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import numpy as np
from sqlalchemy import Select, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import undefer

from radvigil.errors import NotFoundError
from radvigil.store.db import Database
from radvigil.store.rollups import count_predictions
from radvigil.store.schemas import PredictionRecord, ServedBy
from radvigil.store.tables import FeedbackRow, PredictionRow

_COLUMNS = [c.key for c in PredictionRow.__table__.columns]
# a select over any columns, which _filter narrows and hands back with its column types
_S = TypeVar("_S", bound=Select[*tuple[Any, ...]])


def pack_embedding(values: Sequence[float] | None) -> bytes | None:
    """Little-endian float32 bytes: a quarter of the size of a JSON list, exact enough."""
    return None if values is None else np.asarray(values, dtype="<f4").tobytes()


def unpack_embedding(blob: bytes | None) -> list[float] | None:
    """The inverse of :func:`pack_embedding`."""
    return None if blob is None else np.frombuffer(blob, dtype="<f4").astype(float).tolist()


class PredictionKey(NamedTuple):
    """What places a prediction in a window: its id, time and grouping metadata."""

    id: str
    created_at: datetime
    site: str | None
    view_position: str | None


class PredictionPoint(NamedTuple):
    """What the drift page plots of a prediction: its reduced embedding, image statistics and
    whether it was routed to review."""

    embedding: list[float] | None
    image_stats: dict[str, Any]
    routed_to_review: bool


class PredictionStore:
    """Reads and writes the ``predictions`` table.

    Args:
        db: the database.
        keep_review_images: store ``review_image`` bytes; when False they are dropped on
            write, whatever the caller passes (``RADVIGIL_STORE_REVIEW_IMAGES``).
    """

    def __init__(self, db: Database, *, keep_review_images: bool = False) -> None:
        self.db = db
        self.keep_review_images = keep_review_images

    def add_many(self, records: Sequence[PredictionRecord]) -> int:
        """Insert records whose id is not stored yet, in one transaction; return how many."""
        return len(self.add_new(records))

    def add_new(self, records: Sequence[PredictionRecord]) -> list[str]:
        """Insert records whose id is not stored yet, in one transaction; return their ids.

        Replaying the same records is harmless: existing ids are skipped by the database
        (``ON CONFLICT DO NOTHING``), so concurrent writers cannot duplicate a prediction, and
        the ids returned are exactly those this call stored (e.g. to audit each once). The
        hourly rollups count exactly those rows, in the same transaction.
        """
        rows = list({r.id: self._to_row(r) for r in records}.values())
        if not rows:
            return []
        insert = postgresql.insert if self.db.backend == "postgresql" else sqlite.insert
        stmt = (
            insert(PredictionRow)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(PredictionRow.id)
        )
        with self.db.transaction("write predictions") as conn:  # Core executemany, no ORM unit
            stored = list(conn.execute(stmt, rows).scalars())
            new = set(stored)
            count_predictions(conn, [row for row in rows if row["id"] in new])
            return stored

    def existing_ids(self, request_ids: Sequence[str]) -> set[str]:
        """Which of these request ids are stored already."""
        if not request_ids:
            return set()
        query = select(PredictionRow.id).where(PredictionRow.id.in_(set(request_ids)))
        with self.db.session("read prediction ids") as session:
            return set(session.scalars(query))

    def add(self, record: PredictionRecord) -> bool:
        """Insert one record; False when its id was already stored."""
        return self.add_many([record]) == 1

    def get(self, request_id: str, *, with_image: bool = False) -> PredictionRecord:
        """One prediction by request id (its review image only when ``with_image``)."""
        query = select(PredictionRow).where(PredictionRow.id == request_id)
        if with_image:
            query = query.options(undefer(PredictionRow.review_image))
        with self.db.session("read prediction") as session:
            row = session.scalars(query).one_or_none()
            if row is None:
                raise NotFoundError(f"no prediction with request id {request_id!r}")
            return self._to_record(row, with_image=with_image)

    def list(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model_version: str | None = None,
        served_by: ServedBy | None = None,
        routed_to_review: bool | None = None,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = False,
        model_name: str | None = None,
    ) -> list[PredictionRecord]:
        """Predictions in ``[since, until)`` matching the filters, without review images."""
        order = PredictionRow.created_at.desc() if newest_first else PredictionRow.created_at
        query = self._filter(
            select(PredictionRow), since, until, model_version, served_by, routed_to_review
        )
        if model_name is not None:
            query = query.where(PredictionRow.model_name == model_name)
        query = query.order_by(order, PredictionRow.id).offset(offset).limit(limit)
        with self.db.session("list predictions") as session:
            return [self._to_record(row) for row in session.scalars(query)]

    def points(self, *, model_version: str, limit: int) -> builtins.list[PredictionPoint]:
        """The newest answered (not shadow) predictions of a version, three columns each: the
        drift page's points, read from the (version, time) index without the other columns."""
        t = PredictionRow
        query = (
            select(t.embedding, t.image_stats, t.routed_to_review)
            .where(t.model_version == model_version, t.served_by != "shadow")
            .order_by(t.created_at.desc(), t.id.desc())
            .limit(limit)
        )
        with self.db.session("read drift points") as session:
            rows = session.execute(query).all()
        return [
            PredictionPoint(unpack_embedding(blob), stats or {}, bool(flag))
            for blob, stats, flag in rows
        ]

    def keys(
        self,
        *,
        since: datetime,
        until: datetime,
        model_name: str,
        model_version: str,
        served_by: ServedBy,
        labelled_only: bool = False,
    ) -> builtins.list[PredictionKey]:
        """Id, time and grouping metadata of the matching predictions in ``[since, until)``,
        oldest first: a few bytes a row, to place them in windows before loading any.
        ``labelled_only``: only predictions with a label (what counting labels needs)."""
        t = PredictionRow
        query = self._filter(
            select(t.id, t.created_at, t.site, t.view_position),
            since,
            until,
            model_version,
            served_by,
            None,
        ).where(t.model_name == model_name)
        if labelled_only:
            query = query.where(exists().where(FeedbackRow.prediction_id == t.id))
        with self.db.session("list prediction keys") as session:
            rows = session.execute(query.order_by(t.created_at, t.id)).all()
        return [PredictionKey(*row) for row in rows]

    def start_of_newest(
        self,
        n: int,
        *,
        since: datetime | None,
        until: datetime,
        model_name: str,
        model_version: str,
        served_by: ServedBy,
    ) -> datetime | None:
        """When the ``n``-th newest matching prediction in ``[since, until)`` was made; None
        when fewer match. Read from the index, so a backlog costs no rows in memory."""
        t = PredictionRow
        query = (
            self._filter(select(t.created_at), since, until, model_version, served_by, None)
            .where(t.model_name == model_name)
            .order_by(t.created_at.desc(), t.id.desc())
            .offset(n - 1)
            .limit(1)
        )
        with self.db.session("find a backlog's start") as session:
            return session.scalar(query)

    def count(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model_version: str | None = None,
        served_by: ServedBy | None = None,
        routed_to_review: bool | None = None,
    ) -> int:
        """How many predictions match the same filters as :meth:`list`."""
        query = self._filter(
            select(func.count()).select_from(PredictionRow),
            since,
            until,
            model_version,
            served_by,
            routed_to_review,
        )
        with self.db.session("count predictions") as session:
            return int(session.scalar(query) or 0)

    @staticmethod
    def _filter(
        query: _S,
        since: datetime | None,
        until: datetime | None,
        model_version: str | None,
        served_by: str | None,
        routed_to_review: bool | None,
    ) -> _S:
        if since is not None:
            query = query.where(PredictionRow.created_at >= since)
        if until is not None:
            query = query.where(PredictionRow.created_at < until)
        if model_version is not None:
            query = query.where(PredictionRow.model_version == model_version)
        if served_by is not None:
            query = query.where(PredictionRow.served_by == served_by)
        if routed_to_review is not None:
            query = query.where(PredictionRow.routed_to_review == routed_to_review)
        return query

    def _to_row(self, record: PredictionRecord) -> dict[str, Any]:
        row = record.model_dump()
        row["embedding"] = pack_embedding(record.embedding)
        if not self.keep_review_images:
            row["review_image"] = None
        return row

    @staticmethod
    def _to_record(row: PredictionRow, *, with_image: bool = False) -> PredictionRecord:
        values = {key: getattr(row, key) for key in _COLUMNS if key != "review_image"}
        values["embedding"] = unpack_embedding(row.embedding)
        if with_image:
            values["review_image"] = row.review_image
        return PredictionRecord.model_validate(values)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, PredictionRecord]:
        """Stored predictions by id (missing ids are simply absent)."""
        if not request_ids:
            return {}
        query = select(PredictionRow).where(PredictionRow.id.in_(list(request_ids)))
        with self.db.session("read predictions") as session:
            return {row.id: self._to_record(row) for row in session.scalars(query).all()}
