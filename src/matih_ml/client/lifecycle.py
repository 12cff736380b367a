"""``client.lifecycle``, ``client.approvals`` and ``client.policy``: stage moves and what
governs them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from matih_ml.client._base import API, SubClient, body, implements, plain, query, seg
from matih_ml.contracts.names import ApprovalStatusName, EvaluationKindName, StageName
from matih_ml.contracts.policy import Policy
from matih_ml.contracts.protocols import ApprovalsContract, LifecycleContract, PolicyContract
from matih_ml.contracts.schemas import (
    ApprovalCreate,
    ApprovalDecision,
    ApprovalRead,
    EvaluationCreate,
    EvaluationRead,
    GateEvidenceRead,
    ModelRead,
    MoveRead,
    Page,
    PolicyRead,
    ProductionAt,
    RollbackRequest,
    StageChange,
)

_MODELS = f"{API}/models"


def _model(model_id: str) -> str:
    return f"{_MODELS}/{seg(model_id)}"


def _version(model_id: str, version: str | int) -> str:
    return f"{_model(model_id)}/versions/{seg(version)}"


@implements(LifecycleContract)
class LifecycleClient(SubClient):
    """Stage moves and their record."""

    def transition(
        self,
        model_id: str,
        version: str | int,
        stage: StageName,
        *,
        reason: str = "",
        force: bool = False,
    ) -> ModelRead:
        sent = body(StageChange, version=str(version), stage=stage, reason=reason, force=force)
        return self._t.call(ModelRead, "PUT", f"{_model(model_id)}/stage", json=sent)

    def rollback(self, model_id: str, *, reason: str = "") -> ModelRead:
        # Not idempotent: a second rollback goes one production version further back.
        sent = body(RollbackRequest, reason=reason)
        return self._t.call(ModelRead, "POST", f"{_model(model_id)}/rollback", json=sent)

    def history(self, model_id: str) -> Page[MoveRead]:
        return self._t.call(Page[MoveRead], "GET", f"{_model(model_id)}/history")

    def production_at(self, model_id: str, at: datetime | None = None) -> ProductionAt:
        params = query(at=at.isoformat() if at is not None else None)
        return self._t.call(ProductionAt, "GET", f"{_model(model_id)}/production", params=params)

    def record_evaluation(
        self,
        model_id: str,
        version: str | int,
        *,
        kind: EvaluationKindName,
        passed: bool,
        metrics: Mapping[str, float] | None = None,
        notes: str = "",
    ) -> EvaluationRead:
        sent = body(EvaluationCreate, kind=kind, passed=passed, metrics=plain(metrics), notes=notes)
        return self._t.call(
            EvaluationRead, "POST", f"{_version(model_id, version)}/evaluations", json=sent
        )

    def list_evaluations(self, model_id: str, version: str | int) -> Page[EvaluationRead]:
        return self._t.call(
            Page[EvaluationRead], "GET", f"{_version(model_id, version)}/evaluations"
        )

    def gates(self, model_id: str, version: str | int) -> Page[GateEvidenceRead]:
        return self._t.call(Page[GateEvidenceRead], "GET", f"{_version(model_id, version)}/gates")


@implements(ApprovalsContract)
class ApprovalsClient(SubClient):
    """Four-eyes approvals of staging versions for production."""

    def request(self, model_id: str, version: str | int, *, comment: str = "") -> ApprovalRead:
        sent = body(ApprovalCreate, comment=comment)
        return self._t.call(
            ApprovalRead, "POST", f"{_version(model_id, version)}/approvals", json=sent
        )

    def list(
        self, *, status: ApprovalStatusName | None = None, model_id: str | None = None
    ) -> Page[ApprovalRead]:
        params = query(status=status, model_id=model_id)
        return self._t.call(Page[ApprovalRead], "GET", f"{API}/approvals", params=params)

    def get(self, approval_id: int) -> ApprovalRead:
        return self._t.call(ApprovalRead, "GET", f"{API}/approvals/{seg(approval_id)}")

    def approve(self, approval_id: int, *, reason: str = "") -> ApprovalRead:
        return self._decide(approval_id, "approve", reason)

    def reject(self, approval_id: int, *, reason: str = "") -> ApprovalRead:
        return self._decide(approval_id, "reject", reason)

    def _decide(self, approval_id: int, verb: str, reason: str) -> ApprovalRead:
        sent = body(ApprovalDecision, reason=reason)
        return self._t.call(
            ApprovalRead, "POST", f"{API}/approvals/{seg(approval_id)}/{verb}", json=sent
        )


@implements(PolicyContract)
class PolicyClient(SubClient):
    """The promotion policy: the tenant's, or one model's override."""

    def get(self, model_id: str | None = None) -> PolicyRead:
        return self._t.call(PolicyRead, "GET", _policy_path(model_id))

    def set(self, policy: Policy, model_id: str | None = None) -> PolicyRead:
        sent = policy.model_dump(mode="json")
        return self._t.call(PolicyRead, "PUT", _policy_path(model_id), json=sent)

    def clear(self, model_id: str | None = None) -> None:
        self._t.request("DELETE", _policy_path(model_id))


def _policy_path(model_id: str | None) -> str:
    return f"{API}/policy" if model_id is None else f"{_model(model_id)}/policy"
