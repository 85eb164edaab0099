"""One ``radvigil dicom listen`` process: receiver, study worker and outbox around one state.

The state is the service's own :class:`~radvigil.service.state.ServiceState` (model manager,
micro-batcher, prediction writer, audit sink, metrics), built once here, so DICOM studies take
the same path as HTTP uploads. :func:`running_node` runs it on a background thread for tests,
the demo and benchmarks; :meth:`PacsNode.serve` runs it in the foreground for the CLI. Pull
sources (``RADVIGIL_DICOM_PULL_SOURCES``) feed the same spool: :meth:`PacsNode.pull_once` polls
them once and handles what came, ``serve(pull_every=...)`` polls them on an interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import start_http_server

from radvigil.config import Settings
from radvigil.errors import ConfigError, PacsUnavailableError, RadvigilError, StoreError
from radvigil.pacs.metrics import PacsMetrics
from radvigil.pacs.outbox import CStoreSender, Outbox, RetryPolicy, Sender, StowSender
from radvigil.pacs.pull import Puller, PullReport
from radvigil.pacs.receiver import DicomReceiver, ReceiverConfig
from radvigil.pacs.ris import FhirSender, Hl7Sender
from radvigil.pacs.spool import DicomSpool
from radvigil.pacs.worker import StudyWorker
from radvigil.registry import Registry
from radvigil.service.state import ServiceState
from radvigil.store import AlertStore
from radvigil.store.pacs import Destination, PacsStore
from radvigil.store.pacs_pull import PullStore
from radvigil.store.pacs_traffic import add_intake_counts

log = logging.getLogger(__name__)
TICK_S = 0.25


@dataclass(frozen=True)
class PollOutcome:
    """One source's poll: its report, or the PHI-free error that stopped it."""

    source: str
    report: PullReport | None = None
    error: str | None = None


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

    def __init__(self, settings: Settings, registry: Registry, *, receive: bool = True) -> None:
        """``receive`` False: a pulling node (``dicom pull``) that never opens the DICOM port."""
        if receive and settings.production and not settings.dicom_allowed_aes:
            raise ConfigError(
                "RADVIGIL_ENV=production needs RADVIGIL_DICOM_ALLOWED_AES (the PACS AE titles)"
            )
        settings.ensure_home()
        self.settings, self.receive = settings, receive
        self.state = ServiceState.build(settings, registry)
        self.metrics = PacsMetrics(self.state.metrics.registry)
        self.spool = DicomSpool(settings.dicom_spool_dir)
        self.store = PacsStore(self.state.db)
        senders = senders_from(settings)
        pulled_sites = {s.name: s.site for s in settings.dicom_pull_sources if s.site}
        self.pullers = {
            source.name: Puller(
                source,
                self.spool,
                PullStore(self.state.db),
                settings.max_upload_bytes,
                settings.dicom_pull_lookback_days,
                count=self.metrics.count_intake,
            )
            for source in settings.dicom_pull_sources
        }
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
            sites={**settings.dicom_sites, **pulled_sites},
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

    async def run(
        self,
        stop: threading.Event,
        ready: threading.Event | None = None,
        *,
        pull_every: float | None = None,
        pull_sources: Sequence[str] = (),
    ) -> None:
        """Serve until ``stop`` is set: receive (and/or poll the pull sources every
        ``pull_every`` seconds), and each tick handle settled studies and deliver."""
        self.state.start()
        try:
            await asyncio.to_thread(self.outbox.release_stale_local)
        except RadvigilError as exc:  # database not there yet: the leases expire anyway
            log.warning("could not release stale outbox leases: %s", exc.message)
        if self.receive:
            self.receiver.start()
        if ready is not None:
            ready.set()
        next_poll = time.monotonic()
        try:
            while not stop.is_set():
                if pull_every is not None and time.monotonic() >= next_poll:
                    await asyncio.to_thread(self.poll, pull_sources)
                    next_poll = time.monotonic() + pull_every
                await self.tick()
                await asyncio.sleep(TICK_S)
        finally:
            if self.receive:
                self.receiver.stop()
            with contextlib.suppress(RadvigilError):  # the database is down: counts only
                self.save_intake_counts()
            await self.state.stop()

    def check_sources(self, names: Sequence[str]) -> None:
        """Refuse pull source names that are not configured (before a loop starts)."""
        if not self.pullers:
            raise ConfigError("no pull source configured: set RADVIGIL_DICOM_PULL_SOURCES")
        unknown = sorted(set(names) - set(self.pullers))
        if unknown:
            known = ", ".join(self.pullers)
            raise ConfigError(f"unknown pull source(s) {', '.join(unknown)}; known: {known}")

    def poll(self, names: Sequence[str] = ()) -> list[PollOutcome]:
        """Poll the pull sources (all, or ``names``) once; a failing source never stops the rest."""
        self.check_sources(names)
        outcomes = []
        for name, puller in self.pullers.items():
            if names and name not in names:
                continue
            try:
                outcomes.append(PollOutcome(name, report=puller.poll()))
            except (PacsUnavailableError, StoreError) as exc:
                log.warning("poll of %s failed, retried next poll: %s", name, exc.message)
                outcomes.append(PollOutcome(name, error=exc.message))
        return outcomes

    async def pull_once(self, names: Sequence[str] = ()) -> list[PollOutcome]:
        """Poll once, predict what came (a pulled study is whole: no quiet period), deliver."""
        self.check_sources(names)
        self.state.start()
        try:
            outcomes = await asyncio.to_thread(self.poll, names)
            await asyncio.to_thread(self.save_intake_counts)
            if await self.worker.run_once(quiet_s=0.0):
                await asyncio.to_thread(self.state.writer.flush)
            await asyncio.to_thread(self.outbox.deliver_due)
        finally:
            await self.state.stop()
        return outcomes

    def save_intake_counts(self) -> None:
        """Move the receiver's and pullers' intake counts into the database (kept on failure)."""
        counts = self.metrics.tally.drain()
        try:
            add_intake_counts(self.state.db, counts)
        except StoreError:
            self.metrics.tally.restore(counts)
            raise

    async def tick(self) -> None:
        """One round: intake counts saved, settled studies predicted, due outbox rows sent."""
        try:
            await asyncio.to_thread(self.save_intake_counts)
            if await self.worker.run_once():
                await asyncio.to_thread(self.state.writer.flush)
            await asyncio.to_thread(self.outbox.deliver_due)
        except RadvigilError as exc:  # a database outage: keep serving, retry next tick
            log.warning("PACS round failed, retrying: %s", exc.message)

    def serve(self, *, pull_every: float | None = None, pull_sources: Sequence[str] = ()) -> None:
        """Run in the foreground until interrupted (``dicom listen``, ``dicom pull --every``)."""
        if self.settings.dicom_metrics_port:
            start_http_server(
                self.settings.dicom_metrics_port,
                addr=self.settings.dicom_host,
                registry=self.state.metrics.registry,
            )
        stop = threading.Event()
        try:
            asyncio.run(self.run(stop, pull_every=pull_every, pull_sources=pull_sources))
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
