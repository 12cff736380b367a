"""The checks on a served version, and their alerts: once per episode, not per request.

Each check is in alarm or not. Entering alarm opens an episode and publishes one event
in the same transaction; staying in alarm publishes nothing; leaving it closes the
episode, and only a later return opens a new one. The episode row is locked while it
changes (``FOR UPDATE`` on PostgreSQL), so two replicas that see the same drift publish
it once.

- drift: a feature's PSI is over 0.2 and, for a numeric one, the KS test rejects the
  reference distribution (p < 0.01); or the live mean prediction is more than 2
  reference standard deviations from the reference mean (the seed's rule). Input drift
  usually moves the predictions too: one episode covers both, so that one shift is
  one ``MODEL_DRIFT_DETECTED``;
- latency: the window's p95 is over the version's SLA;
- error rate: over 1 % of the window's requests failed.

A check with too little traffic to judge leaves its episode as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matih_ml.events.catalog import EventType
from matih_ml.events.outbox import EventLog
from matih_ml.monitoring import stats
from matih_ml.monitoring.live import Window
from matih_ml.monitoring.prom import ServingMetrics
from matih_ml.store import lifecycle_store as store
from matih_ml.store.db import Database
from matih_ml.store.models import MonitorEpisodeRow

CHECKS = ("drift", "latency", "error_rate")
_EVENT = {
    "drift": EventType.MODEL_DRIFT_DETECTED,
    "latency": EventType.MODEL_LATENCY_ALERT,
    "error_rate": EventType.MODEL_ERROR_RATE_ALERT,
}


@dataclass(frozen=True)
class Thresholds:
    """Where each check goes into alarm."""

    psi: float = 0.2
    ks_pvalue: float = 0.01
    prediction_shift: float = 2.0
    error_rate: float = 0.01
    min_rows: int = 50
    min_requests: int = 20


@dataclass
class Figures:
    """A served version's current figures, and which checks are in alarm."""

    requests: int = 0
    window: int = 0
    error_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    sla_ms: float | None = None
    features: dict[str, dict[str, float | bool]] = field(default_factory=dict)
    prediction_shift: float | None = None
    reference: bool = False
    alarms: dict[str, bool | None] = field(default_factory=dict)
    episodes: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)


class Monitor:
    """Computes figures and runs the episode state machine."""

    def __init__(
        self,
        db: Database,
        events: EventLog,
        metrics: ServingMetrics,
        thresholds: Thresholds | None = None,
    ) -> None:
        self._db = db
        self._events = events
        self._metrics = metrics
        self.thresholds = thresholds or Thresholds()

    def figures(
        self, window: Window | None, profile: dict[str, Any] | None, sla_ms: float
    ) -> Figures:
        """The figures of one window against its reference profile."""
        t = self.thresholds
        f = Figures(sla_ms=sla_ms, reference=profile is not None)
        # What the alarms are judged against, so that a page shows the real lines.
        f.thresholds = {
            "psi": t.psi,
            "ks_pvalue": t.ks_pvalue,
            "prediction_shift": t.prediction_shift,
            "error_rate": t.error_rate,
        }
        if window is None:
            f.alarms = dict.fromkeys(CHECKS)
            return f
        f.requests, f.window = window.requests, len(window.errors)
        judged = f.window >= t.min_requests
        if window.errors:
            f.error_rate = sum(window.errors) / len(window.errors)
        if window.latencies_ms:
            lat = list(window.latencies_ms)
            f.latency_p50_ms = stats.quantile(lat, 0.5)
            f.latency_p95_ms = stats.quantile(lat, 0.95)
        rows = list(window.rows)
        if profile is not None and len(rows) >= t.min_rows:
            f.features = stats.feature_drift(
                profile, rows, psi_threshold=t.psi, ks_pvalue=t.ks_pvalue, min_rows=t.min_rows
            )
            reference = profile.get("prediction")
            predictions = list(window.predictions)
            if reference and reference.get("kind") == "numeric" and reference.get("count"):
                try:
                    f.prediction_shift = stats.prediction_shift(reference, predictions)
                except (ValueError, TypeError):
                    f.prediction_shift = None
        inputs = any(bool(v.get("drifted")) for v in f.features.values()) if f.features else None
        outputs = (
            f.prediction_shift > t.prediction_shift if f.prediction_shift is not None else None
        )
        f.alarms = {
            "drift": None if inputs is None and outputs is None else bool(inputs or outputs),
            "latency": f.latency_p95_ms > sla_ms
            if judged and f.latency_p95_ms is not None
            else None,
            "error_rate": f.error_rate > t.error_rate
            if judged and f.error_rate is not None
            else None,
        }
        return f

    def check(
        self,
        tenant_id: str,
        model: str,
        version: str,
        window: Window | None,
        profile: dict[str, Any] | None,
        sla_ms: float,
    ) -> Figures:
        """Compute the figures, update the episodes and publish what opened.

        Returns:
            The figures, with each check's episode count.
        """
        f = self.figures(window, profile, sla_ms)
        labels = (tenant_id, model, version)
        for name, psi in ((n, v.get("psi")) for n, v in f.features.items()):
            if isinstance(psi, float):
                self._metrics.drift.labels(*labels, name).set(psi)
        if f.prediction_shift is not None:
            self._metrics.prediction_shift.labels(*labels).set(f.prediction_shift)
        with self._db.uow(tenant=tenant_id) as s:
            for check in CHECKS:
                alarm = f.alarms.get(check)
                pk = (tenant_id, model, int(version), check)
                if alarm is None:
                    row = s.get(MonitorEpisodeRow, pk)
                    f.episodes[check] = row.episodes if row else 0
                    continue
                value, threshold = self._value(check, f)
                store.insert_if_missing(
                    s,
                    MonitorEpisodeRow,
                    {
                        "tenant_id": tenant_id,
                        "model_name": model,
                        "version": int(version),
                        "check": check,
                        "open": False,
                        "value": value,
                        "changed_at": store.now(),
                        "episodes": 0,
                    },
                )
                row = s.get(MonitorEpisodeRow, pk, with_for_update=True, populate_existing=True)
                assert row is not None
                if alarm and not row.open:
                    row.open, row.episodes, row.changed_at = True, row.episodes + 1, store.now()
                    self._publish(s, check, tenant_id, model, version, f, value, threshold)
                elif not alarm and row.open:
                    row.open, row.changed_at = False, store.now()
                row.value = value
                f.episodes[check] = row.episodes
                self._metrics.alerts.labels(*labels, check).set(1 if row.open else 0)
        return f

    def _value(self, check: str, f: Figures) -> tuple[float, float]:
        t = self.thresholds
        if check == "drift":
            if any(v.get("drifted") for v in f.features.values()):
                return max(float(v.get("psi", 0.0)) for v in f.features.values()), t.psi
            return float(f.prediction_shift or 0.0), t.prediction_shift
        if check == "latency":
            return float(f.latency_p95_ms or 0.0), float(f.sla_ms or 0.0)
        return float(f.error_rate or 0.0), t.error_rate

    def _publish(
        self,
        s: Any,
        check: str,
        tenant_id: str,
        model: str,
        version: str,
        f: Figures,
        value: float,
        threshold: float,
    ) -> None:
        data: dict[str, Any] = {
            "model": model,
            "version": version,
            "value": _finite(value),
            "threshold": threshold,
        }
        if check == "drift":
            drifted = sorted(n for n, v in f.features.items() if v.get("drifted"))
            data["metric"] = "psi" if drifted else "prediction_shift_stddev"
            data["features"] = drifted
        else:
            data["metric"] = "latency_p95_ms" if check == "latency" else "error_rate"
            data["window"] = f.window
        self._events.emit(s, tenant_id, _EVENT[check], model, data)


def _finite(value: float) -> float:
    # An infinite shift (a constant reference) is stored as a large number: JSON has no inf.
    return value if value == value and abs(value) != float("inf") else 1e308
