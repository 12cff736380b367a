"""Promotion policies: what each gate requires, per tenant, with an override per model."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from matih_ml.gate_policy import MetricThreshold, Policy, ProductionGate, StagingGate
from matih_ml.store.db import Database
from matih_ml.store.models import PolicyRow

__all__ = ["MetricThreshold", "Policy", "PolicyStore", "ProductionGate", "StagingGate"]


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
