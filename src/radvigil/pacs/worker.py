"""The study worker: settled studies from the spool through the one prediction path to the outbox.

DIMSE has no "study complete", so a study is taken once no instance of it arrived for the quiet
period. Each radiograph then goes through :func:`radvigil.service.predicting.predict_items`
(the route's own path: model routing, guards, monitoring, review routing, audit, prediction
store), its SR and Secondary Capture (for a PACS destination) and its FHIR bundle and ORU^R01
(for the RIS destinations) are built and written to the spool's ``outgoing/``, and the
instance plus its outbox rows are recorded in one transaction before the received file is
dropped. An instance already handled under the current champion version is dropped unseen, so a
re-sent study makes no second prediction.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from radvigil.errors import InputError, RadvigilError
from radvigil.model.gradcam import overlay
from radvigil.pacs.metrics import PacsMetrics
from radvigil.pacs.spool import DicomSpool, SpooledInstance
from radvigil.reports import ResultFacts, facts_from_prediction
from radvigil.reports.dicom_sr import sr_bytes, sr_uids
from radvigil.reports.fhir import bundle_json
from radvigil.reports.hl7 import oru_r01
from radvigil.reports.secondary_capture import sc_bytes, sc_uids
from radvigil.reports.uids import derived_uid
from radvigil.service.inference import Scored
from radvigil.service.lifecycle import ServedModel
from radvigil.service.predicting import predict_items
from radvigil.service.schemas import PredictionOut, StudyMetadata
from radvigil.service.state import ServiceState
from radvigil.store.pacs import Destination, InstanceCreate, OutboxCreate, OutboxKind, PacsStore

log = logging.getLogger(__name__)
NOT_SITE = re.compile(r"[^A-Za-z0-9._:-]")
DICOM_DESTINATIONS = ("cstore", "stowrs")  # get the SR and SC; "fhir" and "hl7" get RIS objects
Built = dict[OutboxKind, tuple[str, bytes]]  # kind -> (derived UID, payload)


def site_for(calling_ae: str, sites: dict[str, str]) -> str:
    """The configured site of a calling AE, else the AE title made a valid site code."""
    return sites.get(calling_ae) or NOT_SITE.sub("-", calling_ae)[:64] or "dicom"


@dataclass
class StudyWorker:
    """Turns settled spooled studies into predictions and outbox rows."""

    state: ServiceState
    spool: DicomSpool
    store: PacsStore
    metrics: PacsMetrics
    destinations: tuple[Destination, ...] = ("cstore",)
    sites: dict[str, str] = field(default_factory=dict)
    quiet_s: float = 5.0
    hl7_receiving_app: str = "RIS"

    async def run_once(self, quiet_s: float | None = None) -> int:
        """Handle every settled study (``quiet_s`` overrides the quiet period); returns the
        number of instances handled."""
        handled = 0
        for study in self.spool.settled(self.quiet_s if quiet_s is None else quiet_s):
            for instance in study.instances:
                if await self._handle(instance):
                    handled += 1
        return handled

    async def _handle(self, instance: SpooledInstance) -> bool:
        """Predict one instance; False when it must wait (no model loaded, database down)."""
        try:
            served = self.state.models.require_champion()
            if self.store.seen(instance.sop_key, served.version):
                self._count(instance, "duplicate")
                self.spool.done(instance)
                return True
            data = instance.path.read_bytes()
            header = _header(data)
            if header is None:
                self._refuse(instance, served.version, "not a readable DICOM file")
                return True
            try:
                out, scored = await self._predict(instance, data, header)
            except RadvigilError as exc:
                self._refuse(instance, served.version, exc.message)
                return True
            except Exception as exc:  # a model failure must not stop the listener (nor loop)
                log.exception(
                    "prediction failed for an instance of study %s", instance.study_key[:8]
                )
                self._refuse(instance, served.version, f"prediction failed ({type(exc).__name__})")
                return True
            self._record(instance, out, await self._deliverables(instance, header, out, scored))
        except RadvigilError as exc:  # no model or no database: the spool keeps the instance
            log.warning("instance of study %s waits: %s", instance.study_key[:8], exc.message)
            return False
        self._count(instance, "predicted")
        self.spool.done(instance)
        return True

    async def _predict(
        self, instance: SpooledInstance, data: bytes, header: Dataset
    ) -> tuple[PredictionOut, Scored]:
        meta = StudyMetadata(
            site=site_for(instance.calling_ae, self.sites),
            study_uid=str(header.get("StudyInstanceUID", ""))[:128] or None,
        )
        actor = f"dicom:{instance.calling_ae}"
        started = time.perf_counter()
        return (await predict_items(self.state, actor, [(data, "dicom")], meta, started))[0]

    async def _deliverables(
        self, instance: SpooledInstance, header: Dataset, out: PredictionOut, scored: Scored
    ) -> list[OutboxCreate]:
        """Build each destination's objects into the outgoing spool; their outbox rows."""
        if not self.destinations:  # nothing configured to send to: predict only, build nothing
            return []
        models = self.state.models
        challenger = models.challenger if out.served_by == "challenger" else None
        served = challenger or models.require_champion()
        facts = facts_from_prediction(
            out.request_id,
            out.model_name,
            out.model_version,
            out.probabilities,
            served.findings,
            out.findings,
            out.thresholds,
        )
        rows: list[OutboxCreate] = []
        dicom = tuple(d for d in self.destinations if d in DICOM_DESTINATIONS)
        if dicom:
            target = served.classes.index(out.predicted_class)
            built = await self._dicom_objects(instance, header, scored, facts, served, target)
            rows += self._rows(instance, out, built, dicom, ".dcm")
        if "fhir" in self.destinations:
            bundle = bundle_json(facts).encode()
            fhir: Built = {"fhir": (derived_uid(out.request_id, "fhir"), bundle)}
            rows += self._rows(instance, out, fhir, ("fhir",), ".json")
        if "hl7" in self.destinations:
            now = datetime.now(UTC)
            message = oru_r01(facts, now, receiving_app=self.hl7_receiving_app).encode()
            oru: Built = {"oru": (derived_uid(out.request_id, "hl7"), message)}
            rows += self._rows(instance, out, oru, ("hl7",), ".hl7")
        return rows

    async def _dicom_objects(
        self,
        instance: SpooledInstance,
        header: Dataset,
        scored: Scored,
        facts: ResultFacts,
        served: ServedModel,
        target: int,
    ) -> Built:
        """The SR, and the SC when an explanation can be made (none when the header cannot)."""
        try:
            built: Built = {"sr": (sr_uids(header, facts)[1], sr_bytes(header, facts))}
        except InputError as exc:  # the header cannot carry a result: predicted, nothing sent
            log.warning("no result objects for study %s: %s", instance.study_key[:8], exc.message)
            return {}
        try:
            heatmap = await asyncio.to_thread(served.explain, scored.image.pixels, target)
            overlaid = overlay(scored.image.pixels, heatmap)
            built["sc"] = (sc_uids(header, facts)[1], sc_bytes(header, overlaid, facts))
        except RadvigilError as exc:  # e.g. an imported ONNX model has no Grad-CAM: SR only
            log.warning(
                "no Secondary Capture for study %s: %s", instance.study_key[:8], exc.message
            )
        return built

    def _rows(
        self,
        instance: SpooledInstance,
        out: PredictionOut,
        built: Built,
        destinations: tuple[Destination, ...],
        suffix: str,
    ) -> list[OutboxCreate]:
        rows: list[OutboxCreate] = []
        for kind, (uid, payload) in built.items():
            name = self.spool.put_outgoing(uid, payload, suffix)
            rows.extend(
                OutboxCreate(
                    prediction_id=out.request_id,
                    model_name=out.model_name,
                    model_version=out.model_version,
                    kind=kind,
                    destination=destination,
                    calling_ae=instance.calling_ae,
                    sop_instance_uid=uid,
                    file=name,
                )
                for destination in destinations
            )
        return rows

    def _record(
        self, instance: SpooledInstance, out: PredictionOut, rows: list[OutboxCreate]
    ) -> None:
        self.store.record(
            InstanceCreate(
                sop_key=instance.sop_key,
                study_key=instance.study_key,
                model_version=out.model_version,
                calling_ae=instance.calling_ae,
                site=site_for(instance.calling_ae, self.sites),
                state="predicted",
                prediction_id=out.request_id,
            ),
            rows,
        )

    def _refuse(self, instance: SpooledInstance, version: str, reason: str) -> None:
        log.info("refused an instance of study %s: %s", instance.study_key[:8], reason)
        self.store.record(
            InstanceCreate(
                sop_key=instance.sop_key,
                study_key=instance.study_key,
                model_version=version,
                calling_ae=instance.calling_ae,
                site=site_for(instance.calling_ae, self.sites),
                state="refused",
                reason=reason[:1000],
            )
        )
        self._count(instance, "refused")
        self.spool.done(instance)

    def _count(self, instance: SpooledInstance, outcome: str) -> None:
        self.metrics.instances.labels(instance.calling_ae, outcome).inc()


def _header(data: bytes) -> Dataset | None:
    """The instance's header (no pixels), or None when it is not DICOM at all."""
    try:
        return dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError):
        return None
