"""Prometheus metrics of the DICOM receiver, the study worker and the outbox.

Intake outcomes per calling AE also go to an :class:`IntakeTally` that the node drains into the
database each tick (the dashboard's per-AE traffic), so the C-STORE handler never waits on it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

Tally = dict[tuple[str, str], tuple[int, datetime]]


class IntakeTally:
    """Thread-safe counts of (calling AE, outcome) with the last time seen, until drained."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Tally = {}

    def count(self, calling_ae: str, outcome: str) -> None:
        now = datetime.now(UTC)
        with self._lock:
            n, _ = self._counts.get((calling_ae, outcome), (0, now))
            self._counts[(calling_ae, outcome)] = (n + 1, now)

    def drain(self) -> Tally:
        """Take every count so far (the tally starts again from zero)."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def restore(self, counts: Tally) -> None:
        """Put drained counts back (their database write failed): nothing is lost."""
        with self._lock:
            for key, (n, seen) in counts.items():
                m, last = self._counts.get(key, (0, seen))
                self._counts[key] = (n + m, max(seen, last))


class PacsMetrics:
    """Counters and gauges on a given registry (the service's, so one /metrics shows all)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tally = IntakeTally()
        self.received = Counter(
            "radvigil_dicom_received_total",
            "C-STORE requests by calling AE and outcome (stored, ignored, refused)",
            ["calling_ae", "outcome"],
            registry=registry,
        )
        self.instances = Counter(
            "radvigil_dicom_instances_total",
            "Spooled radiographs the worker finished, by outcome (predicted, refused, duplicate)",
            ["calling_ae", "outcome"],
            registry=registry,
        )
        self.outbox = Gauge(
            "radvigil_pacs_outbox", "Outbox rows by state", ["state"], registry=registry
        )
        self.delivered = Counter(
            "radvigil_pacs_delivered_total",
            "Result objects delivered, by kind (sr, sc)",
            ["kind"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "radvigil_pacs_dead_letters_total",
            "Result objects given up after the last attempt, by kind",
            ["kind"],
            registry=registry,
        )

    def count_intake(self, calling_ae: str, outcome: str) -> None:
        """One received instance (C-STORE or pull): stored, ignored or refused."""
        self.received.labels(calling_ae, outcome).inc()
        self.tally.count(calling_ae, outcome)
