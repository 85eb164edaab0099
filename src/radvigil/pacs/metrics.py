"""Prometheus metrics of the DICOM receiver, the study worker and the outbox."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PacsMetrics:
    """Counters and gauges on a given registry (the service's, so one /metrics shows all)."""

    def __init__(self, registry: CollectorRegistry) -> None:
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
