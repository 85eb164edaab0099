"""Prometheus metrics of one app instance (its own registry, so tests can run several apps)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from radvigil.notes import NoteDraft

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "radvigil_request_latency_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "radvigil_requests_total",
            "Requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "radvigil_predictions_total",
            "Predictions by class",
            ["model_version", "predicted_class", "served_by"],
            registry=self.registry,
        )
        self.drifters = Counter(
            "radvigil_drifters_total",
            "Predictions routed to review",
            ["model_version"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "radvigil_model_info",
            "Loaded model versions (value 1)",
            ["name", "version", "alias"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "radvigil_batch_queue_depth", "Requests waiting for a batch", registry=self.registry
        )
        self.writer_spooled = Gauge(
            "radvigil_predictions_spooled",
            "Prediction records in the durable spool awaiting the database",
            registry=self.registry,
        )
        self.load_failures = Gauge(
            "radvigil_model_load_failures",
            "Model versions that failed to load since start",
            registry=self.registry,
        )
        self.monitor_statistic = Gauge(
            "radvigil_monitor_statistic",
            "Statistic of each monitor on its newest window (grows with drift)",
            ["detector", "group"],
            registry=self.registry,
        )
        self.monitor_threshold = Gauge(
            "radvigil_monitor_threshold",
            "Threshold each monitor's statistic is compared with",
            ["detector", "group"],
            registry=self.registry,
        )
        self.monitor_drift = Gauge(
            "radvigil_monitor_drift",
            "1 when a monitor flagged drift on its newest window, else 0",
            ["detector", "group"],
            registry=self.registry,
        )
        self.open_alerts = Gauge(
            "radvigil_open_alerts",
            "Monitoring alerts not yet resolved (open or acknowledged)",
            registry=self.registry,
        )
        self.notes = Counter(
            "radvigil_notes_generated_total",
            "Patient notes generated: template only, rewrite kept, or rewrite fallen back",
            ["outcome"],
            registry=self.registry,
        )
        self.note_latency = Histogram(
            "radvigil_note_seconds",
            "Time to compose one patient note (rewrite and guards included)",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0),
            registry=self.registry,
        )

    def count_note(self, draft: NoteDraft) -> None:
        """Metrics of one generated note: template only, rewrite kept or fallen back; latency."""
        if draft.rewriter is None:
            outcome = "template"
        else:
            outcome = "rewrite_kept" if draft.source == "rewrite" else "rewrite_fallback"
        self.notes.labels(outcome).inc()
        self.note_latency.observe(draft.latency_ms / 1000)
