"""The promotion policy, in process (``PolicyContract``)."""

from __future__ import annotations

from matih_ml.auth.principal import Permission
from matih_ml.contracts.policy import Policy
from matih_ml.contracts.protocols import PolicyContract
from matih_ml.contracts.schemas import PolicyRead
from matih_ml.local._base import Door, implements


@implements(PolicyContract)
class LocalPolicy(Door):
    """The tenant's promotion policy and each model's override."""

    def get(self, model_id: str | None = None) -> PolicyRead:
        tenant = self._need(Permission.READ)
        policies = self._s.lifecycle.policies
        if model_id is not None:
            self._s.registry.require_model(tenant, model_id)
            policy, source = policies.effective(tenant, model_id)
            return PolicyRead(policy=policy, source=source)
        stored = policies.get(tenant)
        if stored is None:
            return PolicyRead(policy=Policy(), source="default")
        return PolicyRead(policy=stored, source="tenant")

    def set(self, policy: Policy, model_id: str | None = None) -> PolicyRead:
        tenant = self._need(Permission.ADMIN)
        if model_id is not None:
            self._s.registry.require_model(tenant, model_id)
            self._s.lifecycle.policies.set(tenant, policy, model_id, actor=self._who.subject)
            return PolicyRead(policy=policy, source="model")
        self._s.lifecycle.policies.set(tenant, policy, actor=self._who.subject)
        return PolicyRead(policy=policy, source="tenant")

    def clear(self, model_id: str | None = None) -> None:
        tenant = self._need(Permission.ADMIN)
        if model_id is not None:
            self._s.registry.require_model(tenant, model_id)
            self._s.lifecycle.policies.clear(tenant, model_id)
            return
        self._s.lifecycle.policies.clear(tenant)
