"""Promotion policies: what each gate requires, per tenant, with an override per model."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from matih_ml.store.db import Database
from matih_ml.store.models import PolicyRow

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


# json.loads reads NaN and Infinity: a NaN threshold fails every comparison, and JSON
# cannot echo it back (it came out as null), so non-finite numbers are refused.
_Config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MetricThreshold(BaseModel):
    """``metric op value``, e.g. ``accuracy >= 0.9``."""

    model_config = _Config
    metric: str = Field(min_length=1, max_length=250)
    op: Literal[">=", ">", "<=", "<"] = ">="
    value: float

    def holds(self, actual: float) -> bool:
        """Whether ``actual`` meets the threshold."""
        return _OPS[self.op](actual, self.value)


class StagingGate(BaseModel):
    """development → staging: the validation policy."""

    model_config = _Config
    required_metrics: list[MetricThreshold] = Field(default=[], max_length=100)
    primary_metric: str | None = Field(
        default=None,
        max_length=250,
        description="Compared with the current production version's value.",
    )
    higher_is_better: bool = True
    max_regression: float = Field(
        default=0.0, ge=0, description="How much worse than production the candidate may be."
    )
    prediction_check: Literal["required", "if_example", "off"] = Field(
        default="if_example",
        description="Load the model and predict on its stored input example: 'required' fails "
        "a version with no example; 'if_example' only loads such a version.",
    )


class ProductionGate(BaseModel):
    """staging → production: evaluation evidence and/or a four-eyes approval."""

    model_config = _Config
    require_evaluation: bool = False
    evaluation_kinds: list[Literal["shadow", "ab"]] = ["shadow", "ab"]
    require_approval: bool = True


class Policy(BaseModel):
    """A promotion policy. The default asks for a loadable model before staging and an
    approval before production."""

    model_config = _Config
    staging: StagingGate = StagingGate()
    production: ProductionGate = ProductionGate()
    protected_aliases: list[str] = Field(
        default=[],
        max_length=100,
        description="Aliases (besides staging and production, which always follow the "
        "lifecycle) that no client may set or remove through MLflow's API.",
    )
    code_models: Literal["sandbox", "refuse"] = Field(
        default="sandbox",
        description="Models that carry code (pickle, cloudpickle, a PythonModel, a "
        "loader_module): 'sandbox' loads them only in the tenant's sandbox; 'refuse' "
        "refuses to register or load them.",
    )


class PolicyStore:
    """Reads and writes policies: a tenant's default, and per-model overrides."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def allows_code(self, tenant_id: str, model_name: str) -> bool:
        """Whether the policy in force lets a code-bearing model run (in the sandbox)."""
        return self.effective(tenant_id, model_name)[0].code_models != "refuse"

    def effective(self, tenant_id: str, model_name: str) -> tuple[Policy, str]:
        """The policy in force for a model, and where it comes from (model/tenant/default)."""
        with self._db.uow(tenant=tenant_id) as s:
            rows = {
                r.model_name: r.policy
                for r in s.scalars(
                    select(PolicyRow).where(PolicyRow.model_name.in_(["", model_name]))
                )
            }
        if model_name in rows:
            return Policy.model_validate(rows[model_name]), "model"
        if "" in rows:
            return Policy.model_validate(rows[""]), "tenant"
        return Policy(), "default"

    def get(self, tenant_id: str, model_name: str = "") -> Policy | None:
        """The tenant's policy (``model_name`` '') or a model's override, if set."""
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(PolicyRow, (tenant_id, model_name))
            return Policy.model_validate(row.policy) if row else None

    def set(self, tenant_id: str, policy: Policy, model_name: str = "", actor: str = "") -> None:
        """Set the tenant's policy, or a model's override."""
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(PolicyRow, (tenant_id, model_name))
            now = datetime.now(UTC)
            if row is None:
                s.add(
                    PolicyRow(
                        tenant_id=tenant_id,
                        model_name=model_name,
                        policy=policy.model_dump(),
                        updated_at=now,
                        updated_by=actor,
                    )
                )
            else:
                row.policy = policy.model_dump()
                row.updated_at = now
                row.updated_by = actor

    def clear(self, tenant_id: str, model_name: str = "") -> bool:
        """Remove a policy or override; True if there was one."""
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(PolicyRow, (tenant_id, model_name))
            if row is None:
                return False
            s.delete(row)
            return True
