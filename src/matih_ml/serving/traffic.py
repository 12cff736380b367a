"""Shadow and A/B traffic: each model's mode, the samples it leaves, and their summary.

In shadow mode every production request is also scored by the staging version, off the
response's path, and the pair is stored. In A/B mode a share of production traffic is
answered by staging, and each outcome is stored. Either summary can be recorded as the
evaluation the staging→production gate reads, so the gate is fed by real traffic.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, func, select

from matih_ml.errors import ValidationError
from matih_ml.monitoring.stats import quantile
from matih_ml.serving.resolver import WouldBlock
from matih_ml.store import lifecycle_store as store
from matih_ml.store.db import Database
from matih_ml.store.models import ServingConfigRow, ServingSampleRow

MODES = ("off", "shadow", "ab")
# Samples kept per model and staging version; older ones are trimmed.
MAX_SAMPLES = 20_000


@dataclass(frozen=True)
class TrafficConfig:
    """A model's traffic mode."""

    mode: str = "off"
    ab_share: float = 0.0
    updated_by: str = ""


@dataclass
class TrafficSummary:
    """What shadow or A/B traffic showed about a staging version."""

    mode: str
    staging_version: str
    production_version: str | None
    samples: int
    agreement: float | None = None
    mean_abs_delta: float | None = None
    production_mean: float | None = None
    staging_mean: float | None = None
    production_error_rate: float = 0.0
    staging_error_rate: float = 0.0
    production_p95_ms: float | None = None
    staging_p95_ms: float | None = None

    def metrics(self) -> dict[str, float]:
        """The numeric figures, as an evaluation's metrics."""
        return {
            k: float(v)
            for k, v in asdict(self).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }


class TrafficStore:
    """Modes and samples, in the service's database."""

    def __init__(self, db: Database, ttl_s: float) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._configs: dict[tuple[str, str], tuple[float, TrafficConfig]] = {}
        self._written = 0

    def config(self, tenant_id: str, model: str, *, blocking: bool = True) -> TrafficConfig:
        """A model's mode, cached for ``ttl_s`` (every replica sees a change that soon).

        Raises:
            WouldBlock: When not ``blocking`` and the cached mode is stale.
        """
        key = (tenant_id, model)
        now = time.monotonic()
        with self._lock:
            hit = self._configs.get(key)
            if hit is not None and now - hit[0] < self._ttl_s:
                return hit[1]
        if not blocking:
            raise WouldBlock
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(ServingConfigRow, key)
            cfg = TrafficConfig(row.mode, row.ab_share, row.updated_by) if row else TrafficConfig()
        with self._lock:
            self._configs[key] = (now, cfg)
        return cfg

    def set_config(
        self, tenant_id: str, model: str, mode: str, ab_share: float, actor: str
    ) -> TrafficConfig:
        """Set a model's mode.

        Raises:
            ValidationError: For an unknown mode or a share outside (0, 1) in A/B mode.
        """
        if mode not in MODES:
            raise ValidationError(f"mode must be one of {MODES}.", details={"field": "mode"})
        if mode == "ab" and not 0 < ab_share < 1:
            raise ValidationError(
                "ab_share must be between 0 and 1 (exclusive) in A/B mode.",
                details={"field": "ab_share"},
            )
        share = ab_share if mode == "ab" else 0.0
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(ServingConfigRow, (tenant_id, model))
            if row is None:
                row = ServingConfigRow(tenant_id=tenant_id, model_name=model)
                s.add(row)
            row.mode, row.ab_share, row.updated_by, row.updated_at = mode, share, actor, store.now()
        cfg = TrafficConfig(mode, share, actor)
        with self._lock:
            self._configs[(tenant_id, model)] = (time.monotonic(), cfg)
        return cfg

    def record(self, rows: list[ServingSampleRow]) -> None:
        """Store one tenant's samples in one transaction (called off the response's path)."""
        if not rows:
            return
        at = store.now()
        with self._db.uow(tenant=rows[0].tenant_id) as s:
            for row in rows:
                row.at = at
                s.add(row)
        with self._lock:
            before = self._written
            self._written += len(rows)
            trim = before // 1000 != self._written // 1000
        if trim:
            self._trim(rows[0].tenant_id, rows[0].model_name, rows[0].staging_version)

    def _trim(self, tenant_id: str, model: str, staging: int) -> None:
        with self._db.uow(tenant=tenant_id) as s:
            where = (
                ServingSampleRow.model_name == model,
                ServingSampleRow.staging_version == staging,
            )
            newest = s.scalar(select(func.max(ServingSampleRow.id)).where(*where))
            if newest is not None:
                s.execute(
                    delete(ServingSampleRow).where(
                        *where, ServingSampleRow.id <= newest - MAX_SAMPLES
                    )
                )

    def summary(self, tenant_id: str, model: str, staging: str, mode: str) -> TrafficSummary:
        """Summarise a staging version's shadow pairs or A/B outcomes."""
        with self._db.uow(tenant=tenant_id) as s:
            rows = s.scalars(
                select(ServingSampleRow)
                .where(
                    ServingSampleRow.model_name == model,
                    ServingSampleRow.staging_version == int(staging),
                    ServingSampleRow.mode == mode,
                )
                .order_by(ServingSampleRow.id.desc())
                .limit(MAX_SAMPLES)
            ).all()
        prod_versions = {r.production_version for r in rows if r.production_version is not None}
        production = str(max(prod_versions)) if prod_versions else None
        result = TrafficSummary(mode, staging, production, len(rows))
        if not rows:
            return result
        if mode == "shadow":
            a_side = rows
            b_side = rows
        else:
            a_side = [r for r in rows if r.arm == "production"]
            b_side = [r for r in rows if r.arm == "staging"]
        a_pred = [_scalar(r.prediction_a) for r in a_side if not r.error_a]
        b_pred = [_scalar(r.prediction_b) for r in b_side if not r.error_b]
        result.production_error_rate = _rate([r.error_a for r in a_side])
        result.staging_error_rate = _rate([r.error_b for r in b_side])
        result.production_p95_ms = _p95([r.latency_a_ms for r in a_side])
        result.staging_p95_ms = _p95([r.latency_b_ms for r in b_side])
        result.production_mean = _mean(a_pred)
        result.staging_mean = _mean(b_pred)
        if mode == "shadow":
            pairs = [
                (_scalar(r.prediction_a), _scalar(r.prediction_b))
                for r in rows
                if not r.error_a and not r.error_b
            ]
            if pairs:
                result.agreement = sum(_same(a, b) for a, b in pairs) / len(pairs)
                numeric = [abs(a - b) for a, b in pairs if _is_number(a) and _is_number(b)]
                result.mean_abs_delta = sum(numeric) / len(numeric) if numeric else None
        return result


def _scalar(value: Any) -> Any:
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def _p95(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return quantile(present, 0.95) if present else None


def _mean(values: list[Any]) -> float | None:
    numbers = [v for v in values if _is_number(v)]
    return sum(numbers) / len(numbers) if numbers else None
