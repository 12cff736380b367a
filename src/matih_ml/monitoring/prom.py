"""Prometheus metrics of serving: requests, latency, errors and drift, per version.

Each app has its own registry, so that two apps in one process (tests, a replica and
its Ray deployment) do not mix their counts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LABELS = ("tenant", "model", "version")
# Buckets for a service whose target is a few milliseconds.
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """The collectors, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "matih_predictions",
            "Prediction requests, by outcome (ok or error).",
            (*_LABELS, "outcome"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "matih_prediction_latency_seconds",
            "Time to check and score one request, in the service.",
            _LABELS,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.drift = Gauge(
            "matih_feature_drift_psi",
            "Population stability index of a feature's live values against the reference.",
            (*_LABELS, "feature"),
            registry=self.registry,
        )
        self.prediction_shift = Gauge(
            "matih_prediction_shift_stddev",
            "How many reference standard deviations the live mean prediction has moved.",
            _LABELS,
            registry=self.registry,
        )
        self.alerts = Gauge(
            "matih_monitor_alert",
            "1 while a check (drift, latency, error_rate) is in alarm.",
            (*_LABELS, "check"),
            registry=self.registry,
        )
        # Each request's series, found once: ``labels()`` checks and hashes its values
        # on every call, which cost more than an ONNX session scoring one record.
        self._series: dict[tuple[str, str, str, bool], tuple[Any, Any]] = {}

    def observe(self, tenant: str, model: str, version: str, seconds: float, ok: bool) -> None:
        """Count one request."""
        key = (tenant, model, version, ok)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.requests.labels(tenant, model, version, "ok" if ok else "error"),
                self.latency.labels(tenant, model, version),
            )
        series[0].inc()
        series[1].observe(seconds)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
