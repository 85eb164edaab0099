"""One ``radvigil dicom listen`` process: receiver, study worker and outbox around one state.

The state is the service's own :class:`~radvigil.service.state.ServiceState` (model manager,
micro-batcher, prediction writer, audit sink, metrics), built once here, so DICOM studies take
the same path as HTTP uploads. :func:`running_node` runs it on a background thread for tests,
the demo and benchmarks; :meth:`PacsNode.serve` runs it in the foreground for the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from radvigil.config import Settings
from radvigil.errors import ConfigError, RadvigilError
from radvigil.pacs.metrics import PacsMetrics
from radvigil.pacs.outbox import CStoreSender, Outbox, RetryPolicy, Sender, StowSender
from radvigil.pacs.receiver import DicomReceiver, ReceiverConfig
from radvigil.pacs.ris import FhirSender, Hl7Sender
from radvigil.pacs.spool import DicomSpool
from radvigil.pacs.worker import StudyWorker
from radvigil.registry import Registry
from radvigil.service.state import ServiceState
from radvigil.store import AlertStore
from radvigil.store.pacs import Destination, PacsStore

log = logging.getLogger(__name__)
TICK_S = 0.25


def senders_from(settings: Settings) -> dict[Destination, Sender]:
    """The configured destinations: the PACS (none, C-STORE or STOW-RS), FHIR and HL7."""
    senders: dict[Destination, Sender] = {}
    if settings.pacs_send == "cstore":
        senders["cstore"] = CStoreSender(
            settings.pacs_ae_title,
            settings.pacs_host,
            settings.pacs_port,
            calling_ae=settings.dicom_ae_title,
        )
    if settings.pacs_send == "stowrs":
        if not settings.pacs_stow_url:
            raise ConfigError("RADVIGIL_PACS_SEND=stowrs needs RADVIGIL_PACS_STOW_URL")
        senders["stowrs"] = StowSender(
            settings.pacs_stow_url, settings.pacs_username, settings.pacs_password
        )
    if settings.fhir_url:
        if settings.production and not settings.fhir_url.startswith("https://"):
            raise ConfigError("RADVIGIL_ENV=production needs an https:// RADVIGIL_FHIR_URL")
        token = settings.fhir_token.get_secret_value() if settings.fhir_token else None
        senders["fhir"] = FhirSender(settings.fhir_url, token, settings.fhir_timeout_seconds)
    if settings.hl7_host:
        senders["hl7"] = Hl7Sender(
            settings.hl7_host, settings.hl7_port, settings.hl7_timeout_seconds
        )
    return senders


class PacsNode:
    """Receiver + worker + outbox over one :class:`ServiceState`."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        if settings.production and not settings.dicom_allowed_aes:
            raise ConfigError(
                "RADVIGIL_ENV=production needs RADVIGIL_DICOM_ALLOWED_AES (the PACS AE titles)"
            )
        settings.ensure_home()
        self.settings = settings
        self.state = ServiceState.build(settings, registry)
        self.metrics = PacsMetrics(self.state.metrics.registry)
        self.spool = DicomSpool(settings.dicom_spool_dir)
        self.store = PacsStore(self.state.db)
        senders = senders_from(settings)
        self.receiver = DicomReceiver(
            ReceiverConfig(
                settings.dicom_ae_title,
                settings.dicom_host,
                settings.dicom_port,
                settings.dicom_allowed_aes,
                settings.max_upload_bytes,
            ),
            self.spool,
            self.metrics,
        )
        self.worker = StudyWorker(
            self.state,
            self.spool,
            self.store,
            self.metrics,
            destinations=tuple(senders),
            sites=settings.dicom_sites,
            quiet_s=settings.dicom_quiet_seconds,
            hl7_receiving_app=settings.hl7_receiving_app,
        )
        self.outbox = Outbox(
            self.store,
            self.spool,
            senders,
            RetryPolicy(
                settings.outbox_max_attempts,
                settings.outbox_backoff_seconds,
                settings.outbox_backoff_max_seconds,
            ),
            self.metrics,
            AlertStore(self.state.db, self.state.audit),
            lease_s=settings.outbox_lease_seconds,
        )

    async def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set: receive, then each tick handle studies and deliver."""
        self.state.start()
        try:
            await asyncio.to_thread(self.outbox.release_stale_local)
        except RadvigilError as exc:  # database not there yet: the leases expire anyway
            log.warning("could not release stale outbox leases: %s", exc.message)
        self.receiver.start()
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                await self.tick()
                await asyncio.sleep(TICK_S)
        finally:
            self.receiver.stop()
            await self.state.stop()

    async def tick(self) -> None:
        """One round: settled studies to predictions, then due outbox rows to the PACS."""
        try:
            if await self.worker.run_once():
                await asyncio.to_thread(self.state.writer.flush)
            await asyncio.to_thread(self.outbox.deliver_due)
        except RadvigilError as exc:  # a database outage: keep serving, retry next tick
            log.warning("PACS round failed, retrying: %s", exc.message)

    def serve(self) -> None:
        """Run in the foreground until interrupted (``radvigil dicom listen``)."""
        if self.settings.dicom_metrics_port:
            start_http_server(
                self.settings.dicom_metrics_port,
                addr=self.settings.dicom_host,
                registry=self.state.metrics.registry,
            )
        stop = threading.Event()
        try:
            asyncio.run(self.run(stop))
        except KeyboardInterrupt:
            stop.set()


@contextmanager
def running_node(settings: Settings, registry: Registry) -> Iterator[PacsNode]:
    """A started node on a background thread until the block ends."""
    node = PacsNode(settings, registry)
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(node.run(stop, ready))
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="pacs-node", daemon=True)
    thread.start()
    ready.wait(timeout=120)
    if failure:
        raise failure[0]
    try:
        yield node
    finally:
        stop.set()
        thread.join(timeout=60)
