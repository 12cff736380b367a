"""The lifecycle's read side: history, production at a time, stages, gate evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from matih_ml import validation
from matih_ml.registry.metadata import ModelMetadata, Stage
from matih_ml.registry.service import RegistryService
from matih_ml.store import lifecycle_store as store
from matih_ml.store.db import Database
from matih_ml.store.models import StageHistoryRow
from matih_ml.tenancy import validate_tenant_id


@dataclass
class Move:
    """One entry of a model's stage history."""

    id: int
    model_id: str
    version: str
    from_stage: str | None
    to_stage: str
    actor: str
    reason: str
    evidence: dict[str, Any]
    forced: bool
    at: datetime


@dataclass
class TransitionResult:
    """What a move did: the model afterwards, and the history entries it wrote."""

    model: ModelMetadata
    moves: list[Move] = field(default_factory=list)


def move_of(row: StageHistoryRow) -> Move:
    """A history row as a :class:`Move`."""
    return Move(
        row.id,
        row.model_name,
        str(row.version),
        row.from_stage,
        row.to_stage,
        row.actor,
        row.reason,
        row.evidence or {},
        row.forced,
        store.aware(row.at),
    )


class LifecycleReads:
    """Reads of the lifecycle's tables (the base of ``LifecycleService``)."""

    _registry: RegistryService
    _db: Database

    def history(self, tenant_id: str, model_id: str) -> list[Move]:
        """Every stage move of a model, oldest first."""
        name = validation.model_name(model_id)
        self._registry.require_model(tenant_id, name)
        with self._db.uow(tenant=tenant_id) as s:
            return [move_of(r) for r in store.history(s, validate_tenant_id(tenant_id), name)]

    def production_at(self, tenant_id: str, model_id: str, at: datetime) -> str | None:
        """The version that served production at time ``at`` (None if none did)."""
        name = validation.model_name(model_id)
        # SQLite keeps times without their zone, so compare in UTC only.
        at = validation.utc_time(at, "at")
        self._registry.require_model(tenant_id, name)
        serving: str | None = None
        with self._db.uow(tenant=tenant_id) as s:
            for row in store.history(s, tenant_id, name, until=at):
                if row.to_stage == Stage.PRODUCTION.value:
                    serving = str(row.version)
                elif row.from_stage == Stage.PRODUCTION.value and str(row.version) == serving:
                    serving = None
        return serving

    def stage(self, tenant_id: str, model_id: str, version: str | int) -> Stage:
        """A version's stage, as the lifecycle records it."""
        name = validation.model_name(model_id)
        number = validation.version(version)
        self._registry.get_version(tenant_id, name, number)
        with self._db.uow(tenant=tenant_id) as s:
            return self._current_stage(s, tenant_id, name, number)

    def gate_evidence(self, tenant_id: str, model_id: str, version: str | int) -> list[dict]:
        """A version's stored gate outcomes, oldest first."""
        name = validation.model_name(model_id)
        number = validation.version(version)
        self._registry.get_version(tenant_id, name, number)
        with self._db.uow(tenant=tenant_id) as s:
            return [
                {
                    "gate": r.gate,
                    "passed": r.passed,
                    "reasons": r.reasons,
                    "details": r.details,
                    "at": store.aware(r.at),
                }
                for r in store.gate_evidence(s, tenant_id, name, int(number))
            ]

    # ---------------------------------------------------------------- helpers

    def _current_stage(self, s: Session, tenant_id: str, name: str, number: str) -> Stage:
        recorded = store.stages(s, tenant_id, name).get(int(number))
        if recorded is not None:
            return Stage(recorded)
        # Registered before any move: the registry's mirror has it (development).
        return self._registry.stage_of(tenant_id, name, number)

    def _in_stage(self, s: Session, tenant_id: str, name: str, stage: Stage) -> list[str]:
        recorded = store.stages(s, tenant_id, name)
        return [str(v) for v, st in sorted(recorded.items()) if st == stage.value]
