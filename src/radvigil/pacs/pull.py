"""Pull mode: ask a PACS for new CR/DX studies (QIDO-RS), fetch them (WADO-RS), spool them.

For sites that prefer to be asked over routing studies to radvigil. Each fetched instance goes
through the same intake as a STOW-RS part (:func:`radvigil.pacs.intake.admit`) into the same
spool, with the source's name where a calling AE title stands, so the study worker predicts it
exactly as a pushed one (same model, monitoring, review, audit, store; site from the source).

A source's checkpoint is the date its last successful poll started: a poll searches studies
dated from there minus the look-back, and skips every instance ``pacs_pulled`` already holds,
so a re-poll fetches nothing twice. A PACS that cannot be reached raises
:class:`PacsUnavailableError` and moves nothing on: the next poll tries the same range again.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import requests
import retrying
from dicomweb_client.api import DICOMwebClient
from pydicom.errors import InvalidDicomError

from radvigil.config import PullSource
from radvigil.errors import PacsUnavailableError
from radvigil.pacs.intake import SPOOL_FAILED, Intake, admit
from radvigil.pacs.receiver import CANNOT_UNDERSTAND
from radvigil.pacs.spool import DicomSpool, uid_key
from radvigil.store.pacs_pull import PullStore

log = logging.getLogger(__name__)
T = TypeVar("T")

STUDY_UID, SERIES_UID, SOP_UID, MODALITY = "0020000D", "0020000E", "00080018", "00080060"
# A DICOM UID has many dot-separated parts; an IPv4 address has four, so it is left alone.
UID_IN_TEXT = re.compile(r"\b\d+(?:\.\d+){4,}\b")
# dicomweb-client logs UIDs at INFO and urllib3 logs request paths (which hold them) at DEBUG.
CHATTY_LOGGERS = ("dicomweb_client.web", "urllib3.connectionpool")


class UidRedactor(logging.Filter):
    """Replaces DICOM UIDs in a library's log records: a Study Instance UID names a patient."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = UID_IN_TEXT.sub("<uid>", text)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


def redact_library_logs() -> None:
    """Put a :class:`UidRedactor` on the loggers that would print UIDs (once each)."""
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UidRedactor) for f in logger.filters):
            logger.addFilter(UidRedactor())


@dataclass
class PullReport:
    """What one poll of one source did (counts only)."""

    source: str
    studies: int = 0
    fetched: int = 0
    stored: int = 0
    ignored: int = 0
    refused: int = 0
    skipped: int = 0


def _value(item: dict[str, Any], tag: str) -> str | None:
    """The first value of ``tag`` in a DICOM JSON object, or None."""
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


class Puller:
    """Polls one source; ``client`` is injected by tests, else built per poll from the source."""

    def __init__(
        self,
        source: PullSource,
        spool: DicomSpool,
        store: PullStore,
        max_bytes: int,
        lookback_days: int = 1,
        client: DICOMwebClient | None = None,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        """``count(source, outcome)`` is told each intake outcome (the per-AE traffic)."""
        self.source, self.spool, self.store = source, spool, store
        self.max_bytes, self.lookback_days = max_bytes, lookback_days
        self._client, self._count = client, count
        redact_library_logs()

    def poll(self, today: date | None = None) -> PullReport:
        """Search, fetch and spool what is new; move the checkpoint on only on success."""
        today = today or datetime.now(UTC).date()
        checkpoint = self.store.checkpoint(self.source.name)
        since = checkpoint.since if checkpoint is not None and checkpoint.since else today
        start = since - timedelta(days=self.lookback_days)
        try:
            report = self._poll(start)
        except PacsUnavailableError as exc:
            self.store.polled(self.source.name, None, exc.message)
            raise
        self.store.polled(self.source.name, today)
        log.info(
            "pulled from %s: %d studies, %d fetched (%d stored, %d ignored, %d refused), "
            "%d already pulled",
            report.source,
            report.studies,
            report.fetched,
            report.stored,
            report.ignored,
            report.refused,
            report.skipped,
        )
        return report

    @contextmanager
    def _connect(self) -> Iterator[DICOMwebClient]:
        if self._client is not None:
            yield self._client
            return
        session = requests.Session()
        if self.source.username:
            password = self.source.password.get_secret_value() if self.source.password else ""
            session.auth = (self.source.username, password)
        client = DICOMwebClient(url=self.source.url, session=session)
        client.set_http_retry_params(
            max_attempts=self.source.attempts,
            wait_exponential_multiplier=self.source.retry_wait_ms,
        )
        try:
            yield client
        finally:
            session.close()

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One DICOMweb request, its HTTP failures mapped to a PHI-free PacsUnavailableError."""
        try:
            return method(*args, **kwargs)
        except retrying.RetryError as exc:  # the last try still answered 408/429/503/504
            answer = exc.last_attempt.value
            response = answer if isinstance(answer, requests.Response) else None
            status = response.status_code if response is not None else "?"
            raise PacsUnavailableError(
                f"pull source {self.source.name}: {self.source.url} answered HTTP {status} "
                f"{self.source.attempts} times"
            ) from exc
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise PacsUnavailableError(
                f"pull source {self.source.name}: {self.source.url} answered HTTP {status}"
            ) from exc
        except (requests.RequestException, OSError) as exc:
            raise PacsUnavailableError(
                f"pull source {self.source.name}: {self.source.url} unreachable "
                f"({type(exc).__name__})"
            ) from exc

    def _poll(self, start: date) -> PullReport:
        report = PullReport(self.source.name)
        with self._connect() as client:
            studies: dict[str, None] = {}
            for modality in self.source.modalities:
                found = self._call(
                    client.search_for_studies,
                    search_filters={"StudyDate": f"{start:%Y%m%d}-", "ModalitiesInStudy": modality},
                )
                studies.update((uid, None) for s in found if (uid := _value(s, STUDY_UID)))
            report.studies = len(studies)
            for study_uid in studies:
                self._study(client, study_uid, report)
        return report

    def _study(self, client: DICOMwebClient, study_uid: str, report: PullReport) -> None:
        for series in self._call(client.search_for_series, study_uid):
            series_uid = _value(series, SERIES_UID)
            if not series_uid or _value(series, MODALITY) not in self.source.modalities:
                continue  # radvigil's own SR and SC series (and anything else) stay put
            instances = self._call(client.search_for_instances, study_uid, series_uid)
            sops = {uid_key(sop): sop for i in instances if (sop := _value(i, SOP_UID))}
            done = self.store.pulled(self.source.name, sops)
            report.skipped += len(done)
            for key, sop in sops.items():
                if key not in done:
                    self._fetch(client, study_uid, series_uid, sop, report)

    def _fetch(
        self,
        client: DICOMwebClient,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        report: PullReport,
    ) -> None:
        try:
            dataset = self._call(client.retrieve_instance, study_uid, series_uid, sop_uid)
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
        except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, AttributeError):
            intake = Intake("refused", CANNOT_UNDERSTAND, "the PACS sent an unreadable instance")
        else:
            intake = admit(buffer.getvalue(), self.spool, self.source.name, self.max_bytes)
        report.fetched += 1
        setattr(report, intake.outcome, getattr(report, intake.outcome) + 1)
        if intake.comment == SPOOL_FAILED:  # ours, not the instance's: fetch it again next poll
            log.error("pull source %s: could not spool an instance", self.source.name)
            return
        if self._count is not None:
            self._count(self.source.name, intake.outcome)
        self.store.mark(
            self.source.name, uid_key(sop_uid), uid_key(study_uid), intake.outcome, intake.comment
        )
