"""Monitor results and alerts: what the drift monitors found, window by window, and what it raised.

A *window* is ``(model, version, kind, group, start, end)``; all detector rows of a window are
written in one transaction and a unique key makes evaluating the same window twice a no-op, so
several runners (the service's schedule, ``radvigil monitor run``) cannot duplicate results.
Alert state changes are compare-and-set (``expected`` state) and, given an audit log, audited.
Deciding *whether* a transition is allowed is the monitoring library's job, not the store's.
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radvigil.errors import ConflictError, DataError, NotFoundError
from radvigil.store.audit import AuditLog
from radvigil.store.db import Database
from radvigil.store.schemas import utcnow
from radvigil.store.tables import AlertRow, MonitorReportRow, MonitorResultRow

WindowKind = Literal["count", "time"]
AlertStateName = Literal["open", "acknowledged", "resolved"]
Severity = Literal["info", "warning", "critical"]
OVERALL = "all"


class _Duplicate(Exception):
    """A unique key refused the insert (raised inside the session, so it rolls back)."""


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        if "unique" in str(exc.orig).lower():  # SQLite and PostgreSQL both say so
            raise _Duplicate() from exc
        raise


class MonitorResultCreate(BaseModel):
    """One detector's verdict on one window, as the monitoring runner stores it."""

    model_config = ConfigDict(allow_inf_nan=False)

    model_name: str = Field(min_length=1, max_length=200)
    model_version: str = Field(min_length=1, max_length=64)
    window_kind: WindowKind
    window_start: AwareDatetime
    window_end: AwareDatetime
    n: int = Field(ge=0)
    group: str = Field(OVERALL, min_length=1, max_length=200, description="'all' or 'site=X'")
    detector: str = Field(min_length=1, max_length=64)
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    drift: bool = False
    effect_size: float | None = None
    vetoed: str | None = None
    skipped: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    report_path: str | None = None


class MonitorResultPublic(MonitorResultCreate):
    """A stored monitor result."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: AwareDatetime


class AlertCreate(BaseModel):
    """An alert to open (state ``open``)."""

    model_name: str = Field(min_length=1, max_length=200)
    model_version: str = Field(min_length=1, max_length=64)
    rule: str = Field(min_length=1, max_length=100)
    detector: str = Field(min_length=1, max_length=64)
    group: str = Field(OVERALL, min_length=1, max_length=200)
    severity: Severity = "warning"
    message: str
    statistic: float | None = None
    threshold: float | None = None
    first_window: int | None = Field(None, description="monitor_results id of the first window")
    last_window: int | None = Field(None, description="monitor_results id of the last window")


class AlertPublic(AlertCreate):
    """A stored alert with its state and who moved it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: AwareDatetime
    updated_at: AwareDatetime
    state: AlertStateName
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state != "resolved"


class MonitorResultStore:
    """Reads and writes the ``monitor_results`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_window(self, results: Sequence[MonitorResultCreate]) -> list[MonitorResultPublic]:
        """Store all detector rows of one window at once; [] when it was stored already."""
        if not results:
            return []
        now = utcnow()
        rows = [MonitorResultRow(**r.model_dump(), created_at=now) for r in results]
        try:
            with self.db.session("write monitor results", immediate=True) as session:
                session.add_all(rows)
                _flush(session)
                return [MonitorResultPublic.model_validate(row) for row in rows]
        except _Duplicate:  # another runner evaluated this window first
            return []

    def replace(self, results: Sequence[MonitorResultCreate]) -> list[MonitorResultPublic]:
        """Overwrite stored rows (matched on window and detector) with a newer verdict, e.g. a
        labelled detector's once clinicians' labels arrived; rows not stored are skipped."""
        t = MonitorResultRow
        now = utcnow()
        out = []
        with self.db.session("replace monitor results", immediate=True) as session:
            for result in results:
                row = session.scalars(
                    select(t).where(
                        t.model_name == result.model_name,
                        t.model_version == result.model_version,
                        t.window_kind == result.window_kind,
                        t.group == result.group,
                        t.window_start == result.window_start,
                        t.window_end == result.window_end,
                        t.detector == result.detector,
                    )
                ).one_or_none()
                if row is None:
                    continue
                for key, value in result.model_dump(exclude={"report_path"}).items():
                    setattr(row, key, value)
                row.created_at = now
                session.flush()
                out.append(MonitorResultPublic.model_validate(row))
        return out

    def get(self, result_id: int) -> MonitorResultPublic:
        """One result by id."""
        with self.db.session("read monitor result") as session:
            row = session.get(MonitorResultRow, result_id)
            if row is None:
                raise NotFoundError(f"no monitor result with id {result_id}")
            return MonitorResultPublic.model_validate(row)

    def list(
        self,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        window_kind: WindowKind | None = None,
        detector: str | None = None,
        group: str | None = None,
        limit: int | None = 100,
        newest_first: bool = True,
        after: int | None = None,
    ) -> list[MonitorResultPublic]:
        """Results matching the filters, by window end (newest first by default); ``after``
        (the previous page's last id) continues by the key (window end, id).

        Raises:
            NotFoundError: when ``after`` names no stored result.
        """
        t = MonitorResultRow
        query = select(t)
        if after is not None:
            end = self.get(after).window_end
            if newest_first:
                query = query.where(
                    or_(t.window_end < end, and_(t.window_end == end, t.id < after))
                )
            else:
                query = query.where(
                    or_(t.window_end > end, and_(t.window_end == end, t.id > after))
                )
        for column, value in (
            (t.model_name, model_name),
            (t.model_version, model_version),
            (t.window_kind, window_kind),
            (t.detector, detector),
            (t.group, group),
        ):
            if value is not None:
                query = query.where(column == value)
        order = (t.window_end.desc(), t.id.desc()) if newest_first else (t.window_end, t.id)
        with self.db.session("list monitor results") as session:
            rows = session.scalars(query.order_by(*order).limit(limit))
            return [MonitorResultPublic.model_validate(row) for row in rows]

    def dimensions(
        self, model_name: str, model_version: str, window_kind: WindowKind
    ) -> set[tuple[str, str]]:
        """The (detector, group) pairs one version has results for, without reading them."""
        t = MonitorResultRow
        query = (
            select(t.detector, t.group)
            .where(
                t.model_name == model_name,
                t.model_version == model_version,
                t.window_kind == window_kind,
            )
            .distinct()
        )
        with self.db.session("list monitor dimensions") as session:
            return {(detector, group) for detector, group in session.execute(query)}

    def window_of(self, result_id: int) -> builtins.list[MonitorResultPublic]:
        """Every detector row of the window that result ``result_id`` belongs to."""
        one = self.get(result_id)
        t = MonitorResultRow
        query = select(t).where(
            t.model_name == one.model_name,
            t.model_version == one.model_version,
            t.window_kind == one.window_kind,
            t.group == one.group,
            t.window_start == one.window_start,
            t.window_end == one.window_end,
        )
        with self.db.session("read monitor window") as session:
            rows = session.scalars(query.order_by(t.id))
            return [MonitorResultPublic.model_validate(row) for row in rows]

    def cursors(
        self, model_name: str, model_version: str, window_kind: WindowKind
    ) -> dict[str, datetime]:
        """The end of the last evaluated window of each group: where the next one starts."""
        t = MonitorResultRow
        query = (
            select(t.group, func.max(t.window_end))
            .where(
                t.model_name == model_name,
                t.model_version == model_version,
                t.window_kind == window_kind,
            )
            .group_by(t.group)
        )
        with self.db.session("read monitor cursors") as session:
            found = session.execute(query).all()
        return {group: end for group, end in found}

    def recent(
        self, model_name: str, model_version: str, window_kind: WindowKind, windows: int
    ) -> builtins.list[MonitorResultPublic]:
        """All rows of the last ``windows`` windows of every group, oldest window first."""
        t = MonitorResultRow
        scope = (
            t.model_name == model_name,
            t.model_version == model_version,
            t.window_kind == window_kind,
        )
        groups = select(t.group).where(*scope).distinct()
        with self.db.session("read recent monitor results") as session:
            rows: list[MonitorResultRow] = []
            for group in session.scalars(groups).all():  # each an index range, not the history
                ends = (
                    select(t.window_end)
                    .where(*scope, t.group == group)
                    .distinct()
                    .order_by(t.window_end.desc())
                    .limit(windows)
                )
                first = min(session.scalars(ends).all())
                query = select(t).where(*scope, t.group == group, t.window_end >= first)
                rows += session.scalars(query).all()
            rows.sort(key=lambda r: (r.window_end, r.id))
            return [MonitorResultPublic.model_validate(row) for row in rows]

    def save_report(self, result_id: int, html: bytes) -> None:
        """Keep a window's HTML report, keyed by its first result; the first writer wins.

        Stored in the database (gzip) because a replica's report folder is its own: without
        this, every replica behind the load balancer rebuilt the report on its first view.
        """
        insert = postgresql.insert if self.db.backend == "postgresql" else sqlite.insert
        stmt = (
            insert(MonitorReportRow)
            .values(
                result_id=result_id,
                created_at=utcnow(),
                sha256=hashlib.sha256(html).hexdigest(),
                html_gzip=gzip.compress(html),
            )
            .on_conflict_do_nothing(index_elements=["result_id"])
        )
        with self.db.transaction("save a monitor report") as conn:
            conn.execute(stmt)

    def load_report(self, result_id: int) -> bytes | None:
        """The stored HTML report of the window whose first result is ``result_id``, if any.

        Raises:
            DataError: the stored report does not match its SHA-256.
        """
        with self.db.session("read a monitor report") as session:
            row = session.get(MonitorReportRow, result_id)
            if row is None:
                return None
            html, digest = gzip.decompress(row.html_gzip), row.sha256
        if hashlib.sha256(html).hexdigest() != digest:
            raise DataError(f"the stored report of monitor result {result_id} fails its checksum")
        return html

    def set_report_path(self, result_ids: Sequence[int], path: str) -> None:
        """Record where the Evidently report of a window was written."""
        with self.db.session("write report path") as session:
            session.execute(
                update(MonitorResultRow)
                .where(MonitorResultRow.id.in_(list(result_ids)))
                .values(report_path=path)
            )


class AlertStore:
    """Reads and writes the ``alerts`` table; with an audit log, every state change is audited.

    Args:
        db: the database.
        audit: where ``alert.open``, ``alert.acknowledge`` and ``alert.resolve`` are recorded.
    """

    def __init__(self, db: Database, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit

    def open(self, alert: AlertCreate, *, actor: str = "monitor") -> AlertPublic | None:
        """Open an alert; None when one is already active for the same rule and group."""
        now = utcnow()
        row = AlertRow(**alert.model_dump(), state="open", created_at=now, updated_at=now)
        try:
            with self.db.session("open alert", immediate=True) as session:
                session.add(row)
                _flush(session)
                stored = AlertPublic.model_validate(row)
        except _Duplicate:  # an alert of this rule and group is active already
            return None
        self._audit("alert.open", actor, stored, {"message": stored.message})
        return stored

    def get(self, alert_id: int) -> AlertPublic:
        """One alert by id."""
        with self.db.session("read alert") as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFoundError(f"no alert with id {alert_id}")
            return AlertPublic.model_validate(row)

    def list(
        self,
        *,
        state: AlertStateName | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        active: bool | None = None,
        limit: int | None = 100,
        after: int | None = None,
    ) -> list[AlertPublic]:
        """Alerts matching the filters, newest first; ``after`` (the previous page's last id)
        continues by key."""
        t = AlertRow
        query = select(t).order_by(t.id.desc())
        if after is not None:
            query = query.where(t.id < after)
        for column, value in (
            (t.state, state),
            (t.model_name, model_name),
            (t.model_version, model_version),
        ):
            if value is not None:
                query = query.where(column == value)
        if active is not None:
            query = query.where((t.state != "resolved") if active else (t.state == "resolved"))
        with self.db.session("list alerts") as session:
            return [AlertPublic.model_validate(row) for row in session.scalars(query.limit(limit))]

    def count(self, *, state: AlertStateName | None = None) -> int:
        """How many alerts are in ``state`` (all alerts when None)."""
        query = select(func.count()).select_from(AlertRow)
        if state is not None:
            query = query.where(AlertRow.state == state)
        with self.db.session("count alerts") as session:
            return int(session.scalar(query) or 0)

    def transition(
        self,
        alert_id: int,
        to: AlertStateName,
        *,
        expected: AlertStateName,
        actor: str,
        reason: str | None = None,
    ) -> AlertPublic:
        """Move an alert from ``expected`` to ``to``, unless someone moved it meanwhile.

        Raises:
            NotFoundError: no such alert.
            ConflictError: the alert is no longer in state ``expected``.
        """
        values: dict[str, Any] = {"state": to, "updated_at": utcnow()}
        if to == "acknowledged":
            values["acknowledged_by"] = actor
        if to == "resolved":
            values |= {"resolved_by": actor, "reason": reason}
        with self.db.session("update alert", immediate=True) as session:
            result = session.execute(
                update(AlertRow)
                .where(AlertRow.id == alert_id, AlertRow.state == expected)
                .values(**values)
            )
            if cast(CursorResult[Any], result).rowcount == 0:
                row = session.get(AlertRow, alert_id)
                if row is None:
                    raise NotFoundError(f"no alert with id {alert_id}")
                raise ConflictError(f"alert {alert_id} is {row.state} now, not {expected}")
        stored = self.get(alert_id)
        action = {"acknowledged": "alert.acknowledge", "resolved": "alert.resolve"}.get(to, to)
        self._audit(action, actor, stored, {"from": expected, "to": to, "reason": reason})
        return stored

    def _audit(self, action: str, actor: str, alert: AlertPublic, details: dict[str, Any]) -> None:
        if self.audit is None:
            return
        self.audit.append(
            actor=actor,
            action=action,
            object_type="alert",
            object_id=str(alert.id),
            model_version=f"{alert.model_name}/{alert.model_version}",
            details={
                "rule": alert.rule,
                "detector": alert.detector,
                "group": alert.group,
                "severity": alert.severity,
                **details,
            },
        )
