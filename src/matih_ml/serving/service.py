"""PredictionService: a tenant's model, by stage, alias or version, with shadow, A/B and
monitoring around it.

A request resolves its target (:mod:`matih_ml.serving.resolver`), takes the loaded
version from the cache, checks its input against the signature, and scores it. The
response's path ends there: shadow scoring, sample storage and the monitoring checks
run on a small thread pool and a background thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from matih_ml.errors import ValidationError
from matih_ml.events.catalog import EventType
from matih_ml.monitoring.checks import Figures, Monitor
from matih_ml.monitoring.live import LiveTraffic
from matih_ml.monitoring.prom import ServingMetrics
from matih_ml.registry.reviews import ReviewService
from matih_ml.runtime.sandbox import SandboxFailedError
from matih_ml.serving.cache import ModelCache
from matih_ml.serving.loaded import LoadedModel
from matih_ml.serving.resolver import (
    PRODUCTION,
    STAGING,
    Target,
    VersionResolver,
    WouldBlock,
    no_version,
)
from matih_ml.serving.traffic import TrafficStore, TrafficSummary
from matih_ml.store import lifecycle_store as store
from matih_ml.store.models import ServingSampleRow, ServingStateRow

log = logging.getLogger(__name__)

# A version tag: its latency SLA in milliseconds (MATIH_LATENCY_SLA_MS otherwise).
TAG_SLA_MS = "sla_ms"


class PredictionFailedError(ValidationError):
    """The model raised on input that matched its signature (a 422: this input cannot be
    scored; it counts towards the version's error rate)."""

    code = "PREDICTION_FAILED"


@dataclass
class Prediction:
    """One request's answer."""

    model_id: str
    version: str
    target: str
    predictions: list[Any]
    latency_ms: float


@dataclass(frozen=True)
class EvidenceCriteria:
    """What a shadow or A/B summary must show to pass as evaluation evidence."""

    min_samples: int = 100
    min_agreement: float = 0.95
    max_error_rate: float = 0.01
    max_latency_ratio: float = 2.0
    # Sub-millisecond models differ by scheduling noise: a p95 within this many ms of
    # production's passes whatever the ratio.
    latency_slack_ms: float = 5.0


class PredictionService:
    """Serves registered versions; one per process, shared by every request."""

    def __init__(
        self,
        services: Any,
        *,
        rng: random.Random | None = None,
    ) -> None:
        s = services.settings
        self._services = services
        self._registry = services.registry
        self._events = services.events
        self._db = services.db
        self._default_sla_ms = s.latency_sla_ms
        self.resolver = VersionResolver(
            services.registry,
            services.tenants,
            services.backend.client,
            services.db,
            s.serving_check_s,
        )
        self.cache = ModelCache(
            s.serving_cache_size,
            s.data_dir.resolve() / "serving",
            self._registry.download_version,
            services.runtime,
            verify=services.provenance.require_loadable,
        )
        services.events.subscribe(self.resolver.invalidate)
        self.traffic = TrafficStore(services.db, s.serving_check_s)
        self.live = LiveTraffic(s.monitor_window)
        self.metrics = ServingMetrics()
        self.monitor = Monitor(services.db, services.events, self.metrics)
        self._interval_s = s.monitor_interval_s
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="matih-shadow")
        self._announced: dict[tuple[str, str, str], str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.warm = threading.Event()

    # ------------------------------------------------------------------ predict

    def predict(
        self,
        tenant_id: str,
        model: str,
        payload: dict[str, Any],
        target: Target | None = None,
        *,
        blocking: bool = True,
    ) -> Prediction:
        """Score ``payload`` (``records``: a list of objects, or ``inputs``: an array).

        Without a target, production answers, unless A/B mode sends this request to
        staging; in shadow mode staging also scores it, after the answer.

        Args:
            blocking: False to score only from what is cached and fresh (the API does
                this on its event loop for small requests), raising
                :class:`~matih_ml.serving.resolver.WouldBlock` before any database
                read or model load.

        Raises:
            ValidationError: Input that does not match the signature (names the field).
            NotFoundError: An unknown model, or no version in the target.
            PredictionFailedError: The model raised on valid input.
        """
        chosen = target or PRODUCTION
        version = self.resolver.resolve(tenant_id, model, chosen, blocking=blocking)
        if version is None:
            raise no_version(model, chosen)
        mode = self.traffic.config(tenant_id, model, blocking=blocking) if target is None else None
        staging = None
        if mode is not None and mode.mode != "off":
            staging = self.resolver.resolve(tenant_id, model, STAGING, blocking=blocking)
        arm = "production"
        routed = mode is not None and mode.mode == "ab" and staging is not None
        if routed and self._rng.random() < mode.ab_share:  # type: ignore[union-attr]
            arm, version, chosen = "staging", staging, STAGING
        if blocking:
            loaded = self._loaded(tenant_id, model, version)
            if chosen == PRODUCTION:
                self._announce(tenant_id, model, chosen, version)
        else:
            ready = self.cache.peek(tenant_id, model, version)
            announced = (
                chosen != PRODUCTION
                or self._announced.get((tenant_id, model, chosen.label)) == version
            )
            # A sandboxed model answers over a pipe, up to MATIH_SANDBOX_TIMEOUT_S: never
            # on the event loop.
            sandboxed = ready is not None and ready.serving_runtime == "sandbox"
            if ready is None or ready.sla_ms is None or not announced or sandboxed:
                raise WouldBlock
            loaded = ready
        data, records = self._input(loaded, payload)
        if not blocking and not loaded.in_process_for(data):
            raise WouldBlock  # an ONNX twin leaves this input to its sandboxed estimator
        started = time.perf_counter()
        try:
            predictions = loaded.predict(data)
        except SandboxFailedError:
            raise  # the sandbox is down or timed out: a 503, not the input's fault
        except Exception as exc:  # noqa: BLE001 - any model failure is the caller's 422
            elapsed = time.perf_counter() - started
            self._observe(loaded, elapsed, False, None, None)
            if mode is not None and mode.mode == "ab" and staging is not None:
                self._sample(tenant_id, model, "ab", arm, version, staging, None, elapsed, True)
            raise PredictionFailedError(
                f"Model {model!r} v{version} could not score this input: "
                f"{type(exc).__name__}: {exc}"[:500],
                details={"model_id": model, "version": version},
            ) from None
        elapsed = time.perf_counter() - started
        self._observe(loaded, elapsed, True, records, predictions)
        if mode is not None and staging is not None:
            if mode.mode == "shadow" and staging != version:
                self._pool.submit(
                    self._shadow, tenant_id, model, version, staging, payload, predictions, elapsed
                )
            elif mode.mode == "ab":
                self._sample(
                    tenant_id, model, "ab", arm, version, staging, predictions, elapsed, False
                )
        return Prediction(model, version, chosen.label, predictions, elapsed * 1000)

    def _loaded(self, tenant_id: str, model: str, version: str) -> LoadedModel:
        loaded = self.cache.get(tenant_id, model, version)
        if loaded.sla_ms is None:
            tags = self._registry.get_version(tenant_id, model, version).tags or {}
            try:
                loaded.sla_ms = float(tags.get(TAG_SLA_MS) or self._default_sla_ms)
            except ValueError:
                loaded.sla_ms = self._default_sla_ms
        return loaded

    @staticmethod
    def _input(loaded: LoadedModel, payload: dict[str, Any]) -> tuple[Any, list[dict] | None]:
        if not isinstance(payload, dict):
            raise ValidationError("The body must be an object.", details={"field": "body"})
        if "records" in payload and "inputs" in payload:
            raise ValidationError("Give records or inputs, not both.", details={"field": "inputs"})
        if "inputs" in payload:
            if loaded.columns:
                raise ValidationError(
                    "This model takes records (its signature names columns), not inputs.",
                    details={"field": "inputs"},
                )
            return loaded.tensor(payload["inputs"]), None
        if "records" not in payload:
            raise ValidationError(
                "The body needs records: a list of objects.", details={"field": "records"}
            )
        records = payload["records"]
        return loaded.frame(records), records

    def _observe(
        self,
        loaded: LoadedModel,
        seconds: float,
        ok: bool,
        records: list[dict] | None,
        predictions: list[Any] | None,
    ) -> None:
        key = (loaded.tenant_id, loaded.model, loaded.version)
        self.metrics.observe(*key, seconds, ok)
        self.live.record(key, seconds * 1000, not ok, records, predictions)

    # --------------------------------------------------------- shadow and A/B

    def _shadow(
        self,
        tenant_id: str,
        model: str,
        production: str,
        staging: str,
        payload: dict[str, Any],
        answered: list[Any],
        answered_s: float,
    ) -> None:
        error = False
        predictions: list[Any] | None = None
        started = time.perf_counter()
        try:
            candidate = self._loaded(tenant_id, model, staging)
            # Staging builds its own input: its signature's columns may differ.
            started = time.perf_counter()  # the first call's load is not the model's latency
            predictions = candidate.predict(self._input(candidate, payload)[0])
        except Exception:  # noqa: BLE001 - a failing candidate is what shadow is for
            error = True
        elapsed = time.perf_counter() - started
        try:
            self.traffic.record(
                [
                    ServingSampleRow(
                        tenant_id=tenant_id,
                        model_name=model,
                        mode="shadow",
                        production_version=int(production),
                        staging_version=int(staging),
                        prediction_a=a,
                        prediction_b=None if predictions is None else predictions[i],
                        latency_a_ms=answered_s * 1000,
                        latency_b_ms=elapsed * 1000,
                        error_a=False,
                        error_b=error,
                    )
                    for i, a in enumerate(answered)
                ]
            )
        except Exception:  # losing a sample must not break serving
            log.warning("could not store a shadow sample", exc_info=True)

    def _sample(
        self,
        tenant_id: str,
        model: str,
        mode: str,
        arm: str,
        version: str,
        staging: str,
        predictions: list[Any] | None,
        seconds: float,
        error: bool,
    ) -> None:
        production = None if arm == "staging" else int(version)
        side = "a" if arm == "production" else "b"
        row = ServingSampleRow(
            tenant_id=tenant_id,
            model_name=model,
            mode=mode,
            arm=arm,
            production_version=production,
            staging_version=int(staging),
            **{
                f"prediction_{side}": predictions[0] if predictions else None,
                f"latency_{side}_ms": seconds * 1000,
                f"error_{side}": error,
            },
        )
        self._pool.submit(self._record_quietly, row)

    def _record_quietly(self, row: ServingSampleRow) -> None:
        try:
            self.traffic.record([row])
        except Exception:
            log.warning("could not store a serving sample", exc_info=True)

    def summary(self, tenant_id: str, model: str, mode: str) -> TrafficSummary:
        """The current staging version's shadow or A/B summary.

        Raises:
            NotFoundError: No staging version.
        """
        staging = self.resolver.resolve(tenant_id, model, STAGING)
        if staging is None:
            raise no_version(model, STAGING)
        return self.traffic.summary(tenant_id, model, staging, mode)

    def record_evidence(
        self,
        tenant_id: str,
        model: str,
        mode: str,
        criteria: EvidenceCriteria,
        actor: str,
    ) -> tuple[TrafficSummary, Any, list[str]]:
        """Judge the staging version's traffic summary and record it as an evaluation.

        Returns:
            The summary, the recorded evaluation, and the reasons it failed (if any).
        """
        if mode not in ("shadow", "ab"):
            raise ValidationError("kind must be shadow or ab.", details={"field": "kind"})
        summary = self.summary(tenant_id, model, mode)
        reasons = judge(summary, criteria)
        reviews: ReviewService = self._services.lifecycle.reviews
        evaluation = reviews.record_evaluation(
            tenant_id,
            model,
            summary.staging_version,
            kind=mode,
            passed=not reasons,
            metrics=summary.metrics(),
            notes=("; ".join(reasons) or "passed")
            + f" (criteria: {asdict(criteria)}, from live {mode} traffic)",
            actor=actor,
        )
        return summary, evaluation, reasons

    # ------------------------------------------------------------- deployment

    def _announce(self, tenant_id: str, model: str, target: Target, version: str) -> None:
        """Publish ``MODEL_DEPLOYED`` the first time a version serves a target.

        The row per model and target makes it once across replicas, not once each.
        """
        key = (tenant_id, model, target.label)
        if self._announced.get(key) == version:
            return
        with self._db.uow(tenant=tenant_id) as s:
            fresh = {"tenant_id": tenant_id, "model_name": model, "target": key[2]}
            created = store.insert_if_missing(
                s, ServingStateRow, {**fresh, "version": int(version), "at": store.now()}
            )
            row = s.get(ServingStateRow, key, with_for_update=True, populate_existing=True)
            replaced = None if created or row is None else str(row.version)
            if created or replaced != version:
                if row is not None:
                    row.version, row.at = int(version), store.now()
                self._events.emit(
                    s,
                    tenant_id,
                    EventType.MODEL_DEPLOYED,
                    model,
                    {
                        "model": model,
                        "version": version,
                        "stage": target.label,
                        "actor": "serving",
                        "replaced": replaced,
                    },
                )
        self._announced[key] = version

    # ------------------------------------------------------------- monitoring

    def monitoring(self, tenant_id: str, model: str, version: str | None = None) -> Figures:
        """A version's current figures (production's by default), checked now."""
        if version is None:
            version = self.resolver.resolve(tenant_id, model, PRODUCTION)
            if version is None:
                raise no_version(model, PRODUCTION)
        else:
            version = self._registry.get_version(tenant_id, model, version).version
        loaded = self._loaded(tenant_id, model, version)
        window = self.live.snapshot((tenant_id, model, version))
        return self.monitor.check(
            tenant_id, model, version, window, loaded.profile, loaded.sla_ms or 0.0
        )

    def check_all(self) -> None:
        """Run every served version's checks (the background thread's round)."""
        for tenant_id, model, version in self.live.served():
            try:
                self.monitoring(tenant_id, model, version)
            except Exception:
                log.warning("monitoring %s/%s v%s failed", tenant_id, model, version, exc_info=True)

    def preload(self) -> int:
        """Load the versions that were serving before this process started.

        A replica that reports ready and then spends seconds loading on its first request
        shows as a latency spike at every deploy: ``/readyz`` waits for this instead.
        For each model that has served (most recently switched first, at most the
        cache's size), the version production names now is loaded; one that fails to
        load is skipped (its first request will say why).

        Returns:
            How many versions were loaded.
        """
        with self._db.unscoped() as s:  # what every tenant served
            rows = s.scalars(
                select(ServingStateRow).order_by(ServingStateRow.at.desc()).limit(self.cache.size)
            ).all()
            serving = [(r.tenant_id, r.model_name) for r in rows]
        loaded = 0
        for tenant_id, model in serving:
            if self._stop.is_set():
                break
            try:
                version = self.resolver.resolve(tenant_id, model, PRODUCTION)
                if version is None:
                    continue
                self._loaded(tenant_id, model, version)
                loaded += 1
            except Exception:
                log.warning("could not preload %s/%s", tenant_id, model, exc_info=True)
        return loaded

    def start(self) -> None:
        """Preload what was serving, then run the checks every ``MATIH_MONITOR_INTERVAL_S``,
        in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            try:
                self.preload()
            except Exception:
                log.warning("preloading served versions failed", exc_info=True)
            finally:
                self.warm.set()
            while not self._stop.wait(self._interval_s):
                self.check_all()

        self._thread = threading.Thread(target=loop, name="matih-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the checks, the shadow pool and the tenants' sandbox workers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._pool.shutdown(wait=True)
        # One PredictionService per Services, which an app's lifespan starts and stops:
        # a fresh pool (its threads start on first use) keeps it usable by whatever
        # still holds the services, and by the next app's start.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="matih-shadow")
        self._services.runtime.close()


def judge(summary: TrafficSummary, criteria: EvidenceCriteria) -> list[str]:
    """Why a summary fails the criteria (empty when it passes)."""
    reasons: list[str] = []
    if summary.samples < criteria.min_samples:
        reasons.append(f"{summary.samples} samples, fewer than {criteria.min_samples}")
    agreement = summary.agreement
    if summary.mode == "shadow" and (agreement is None or agreement < criteria.min_agreement):
        reasons.append(f"agreement with production {agreement} is below {criteria.min_agreement}")
    if summary.staging_error_rate > criteria.max_error_rate:
        reasons.append(
            f"staging error rate {summary.staging_error_rate:.4f} is over {criteria.max_error_rate}"
        )
    if summary.production_p95_ms and summary.staging_p95_ms is not None:
        ratio = summary.staging_p95_ms / summary.production_p95_ms
        slower_by = summary.staging_p95_ms - summary.production_p95_ms
        if ratio > criteria.max_latency_ratio and slower_by > criteria.latency_slack_ms:
            reasons.append(
                f"staging p95 latency is {ratio:.2f}x production's ({slower_by:.1f} ms "
                f"slower), over {criteria.max_latency_ratio}x"
            )
    return reasons
