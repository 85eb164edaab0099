"""Delivery of built result objects from the outbox: C-STORE or STOW-RS, retries, dead-letter.

Each pass leases due rows to this listener (:meth:`PacsStore.claim`, so listeners sharing one
database never send the same row at once) and sends them; success marks a row delivered (and
drops its file), a failure schedules the next attempt with exponential back-off up to a cap,
and the last allowed failure, or a refusal retrying cannot cure
(:class:`~radvigil.errors.DeliveryRejectedError`), moves it to dead-letter, counts it in a
metric and opens an alert. Re-sending after a crash is safe: the object's SOP Instance UID is
derived (FHIR: conditional create), so the receiver keeps one copy. The RIS senders (FHIR,
HL7) live in :mod:`radvigil.pacs.ris`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pynetdicom import AE

from radvigil.errors import DeliveryError, DeliveryRejectedError, StoreError
from radvigil.pacs.metrics import PacsMetrics
from radvigil.pacs.spool import DicomSpool
from radvigil.store import AlertCreate, AlertStore
from radvigil.store.pacs import Destination, OutboxEntry, PacsStore
from radvigil.store.schemas import utcnow

log = logging.getLogger(__name__)
DEAD_LETTER_RULE = "pacs_dead_letter"
OK_STATUSES = {0x0000, 0xB000, 0xB007, 0xB006}  # success and the storage warnings


class Sender(Protocol):
    """Delivers one built file; raises :class:`DeliveryError` when it was not taken."""

    def send(self, path: Path) -> None: ...


@dataclass
class CStoreSender:
    """C-STORE SCU to the PACS (one association per object: simple, and enough at this rate)."""

    ae_title: str
    host: str
    port: int
    calling_ae: str = "RADVIGIL"
    timeout_s: float = 30.0

    def send(self, path: Path) -> None:
        dataset = dcmread(path)
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
        where = f"{self.ae_title}@{self.host}:{self.port}"
        assoc = ae.associate(self.host, self.port, ae_title=self.ae_title)
        if not assoc.is_established:
            raise DeliveryError(f"no association with {where} (refused, aborted or unreachable)")
        try:
            status = assoc.send_c_store(dataset)
        finally:
            assoc.release()
        code = getattr(status, "Status", None)
        if code is None:
            raise DeliveryError(f"{where} sent no C-STORE response (timeout or abort)")
        if int(code) not in OK_STATUSES:
            raise DeliveryError(f"{where} refused the object with status 0x{int(code):04X}")


@dataclass
class StowSender:
    """STOW-RS to a DICOMweb server (``dicomweb-client``), with optional basic auth."""

    url: str
    username: str | None = None
    password: str | None = None
    timeout_s: float = 30.0

    def send(self, path: Path) -> None:
        session = requests.Session()
        if self.username:
            session.auth = (self.username, self.password or "")
        client = DICOMwebClient(url=self.url, session=session)
        try:
            client.store_instances([dcmread(path)])
        except (requests.RequestException, OSError) as exc:  # dicomweb-client's HTTP library
            raise DeliveryError(f"STOW-RS to {self.url} failed: {type(exc).__name__}") from exc
        finally:
            session.close()


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts``; waits ``base_s * 2**(attempt-1)``, never over ``max_s``."""

    max_attempts: int = 8
    base_s: float = 2.0
    max_s: float = 300.0

    def delay(self, attempts: int) -> float | None:
        """Seconds before the next try after ``attempts`` failures; None: give up."""
        if attempts >= self.max_attempts:
            return None
        return min(self.base_s * 2 ** (attempts - 1), self.max_s)


def holder_name() -> str:
    """A lease holder name unique to this process: host, pid and a random suffix."""
    return f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _host() -> str:
    return socket.gethostname()[:40].replace(":", "-")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class Outbox:
    """Sends what is due and keeps the outbox's states (and their gauge) up to date.

    Args:
        holder: this listener's lease name (default: :func:`holder_name`).
        lease_s: how long claimed rows stay this listener's; longer than a batch takes.
        batch: rows claimed at a time (small, so listeners share the work).
    """

    def __init__(
        self,
        store: PacsStore,
        spool: DicomSpool,
        senders: Mapping[Destination, Sender],
        policy: RetryPolicy,
        metrics: PacsMetrics,
        alerts: AlertStore | None = None,
        *,
        holder: str | None = None,
        lease_s: float = 300.0,
        batch: int = 10,
    ) -> None:
        self.store, self.spool, self.senders = store, spool, senders
        self.policy, self.metrics, self.alerts = policy, metrics, alerts
        self.holder = holder or holder_name()
        self.lease_s, self.batch = lease_s, batch

    def deliver_due(self) -> int:
        """Claim and send what was due when the pass began; returns how many were delivered.

        A row that fails in this pass is due again only after the pass began, so each pass
        tries each row at most once, whatever the back-off.
        """
        delivered, began = 0, utcnow()
        while claimed := self.store.claim(self.holder, self.lease_s, self.batch, due_by=began):
            for entry in claimed:
                delivered += self._deliver(entry)
        self.refresh_gauge()
        return delivered

    def release_stale_local(self) -> int:
        """Give back leases of earlier listeners on this host that no longer run.

        A restarted listener would otherwise wait out its own dead predecessor's lease. A
        holder is stale when its process is gone, or has this process's pid under another
        name (a container restarted as pid 1). Holders on other hosts are left to expire.
        Returns how many rows were released.
        """
        released = 0
        for holder in self.store.holders():
            host, _, rest = holder.partition(":")
            pid = rest.partition(":")[0]
            if host != _host() or holder == self.holder or not pid.isdigit():
                continue
            if int(pid) == os.getpid() or not _running(int(pid)):
                released += self.store.release(holder)
        if released:
            log.warning("released %d outbox row(s) leased by a listener that is gone", released)
        return released

    def refresh_gauge(self) -> None:
        for state, count in self.store.counts().items():
            self.metrics.outbox.labels(state).set(count)

    def _deliver(self, entry: OutboxEntry) -> int:
        sender = self.senders.get(entry.destination)
        path = self.spool.outgoing_path(entry.file)
        try:
            if sender is None:
                raise DeliveryError(f"no sender configured for {entry.destination}")
            if not path.is_file():
                raise DeliveryError(f"the built {entry.kind} file is missing from the spool")
            sender.send(path)
        except DeliveryError as exc:
            self._failed(entry, exc.message, final=isinstance(exc, DeliveryRejectedError))
            return 0
        if not self.store.delivered(entry.id, self.holder):
            log.warning("outbox %d was sent after its lease ran out (re-sent: harmless)", entry.id)
            return 0
        path.unlink(missing_ok=True)
        self.metrics.delivered.labels(entry.kind).inc()
        log.info(
            "delivered %s of prediction %s (outbox %d)", entry.kind, entry.prediction_id, entry.id
        )
        return 1

    def _failed(self, entry: OutboxEntry, message: str, *, final: bool = False) -> None:
        attempts = entry.attempts + 1
        delay = None if final else self.policy.delay(attempts)
        if not self.store.failed(entry.id, self.holder, message, delay):
            log.warning("outbox %d failed after its lease ran out: %s", entry.id, message)
            return
        if delay is not None:
            log.warning(
                "outbox %d attempt %d failed, retry in %.1f s: %s",
                entry.id,
                attempts,
                delay,
                message,
            )
            return
        self.metrics.dead_letters.labels(entry.kind).inc()
        log.error("outbox %d dead-lettered after %d attempt(s): %s", entry.id, attempts, message)
        if self.alerts is None:
            return
        try:
            self.alerts.open(
                AlertCreate(
                    model_name=entry.model_name,
                    model_version=entry.model_version,
                    rule=DEAD_LETTER_RULE,
                    detector="pacs_outbox",
                    severity="critical",
                    message=f"{entry.kind} of prediction {entry.prediction_id} was not delivered "
                    f"to {entry.destination} after {attempts} attempt(s) ({message}); "
                    "`radvigil dicom retry` resends it",
                    statistic=float(attempts),
                    threshold=float(self.policy.max_attempts),
                ),
                actor="pacs-outbox",
            )
        except StoreError as exc:
            log.error("could not open the dead-letter alert: %s", exc.message)
