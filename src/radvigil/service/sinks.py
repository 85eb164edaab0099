"""The prediction writer's sink: store predictions and their audit records together."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from radvigil.store import AuditLog, PredictionRecord, PredictionStore
from radvigil.store.audit_coverage import prediction_digest
from radvigil.store.schemas import AuditCreate

MAX_PENDING_ACTORS = 100_000


class AuditedPredictions:
    """Insert predictions, then append one audit record per newly stored prediction.

    Running inside the writer thread keeps audit writes off the request path, and replays from
    the spool go through here too, so a prediction stored after an outage is audited as well.
    The requesting key's name is remembered in memory until the record is written; a record
    replayed after a restart is audited with actor ``api``.
    """

    def __init__(self, store: PredictionStore, audit: AuditLog) -> None:
        self.store, self.audit = store, audit
        self._actors: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, request_id: str, actor: str) -> None:
        with self._lock:
            self._actors[request_id] = actor
            while len(self._actors) > MAX_PENDING_ACTORS:
                self._actors.popitem(last=False)

    def add_many(self, records: Sequence[PredictionRecord]) -> int:
        stored = set(self.store.add_new(records))
        events = []
        for record in records:
            if record.id not in stored:
                continue
            with self._lock:
                actor = self._actors.pop(record.id, "api")
            events.append(
                AuditCreate(
                    actor=actor,
                    action="predict",
                    object_type="prediction",
                    object_id=record.id,
                    model_version=f"{record.model_name}/{record.model_version}",
                    request_id=record.id,
                    details={
                        "predicted_class": record.predicted_class,
                        "served_by": record.served_by,
                        "routed_to_review": record.routed_to_review,
                        "outputs_sha256": prediction_digest(record),
                    },
                )
            )
        if events:
            self.audit.append_many(events)
        return len(stored)
