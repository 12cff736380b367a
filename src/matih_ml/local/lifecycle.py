"""Stage moves, their record, and four-eyes approvals, in process (``LifecycleContract``,
``ApprovalsContract``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from matih_ml.auth.principal import Permission
from matih_ml.contracts.checks import checked
from matih_ml.contracts.names import ApprovalStatusName, EvaluationKindName, StageName
from matih_ml.contracts.protocols import ApprovalsContract, LifecycleContract
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
    ProductionAt,
    RollbackRequest,
    StageChange,
)
from matih_ml.local._base import Door, implements


@implements(LifecycleContract)
class LocalLifecycle(Door):
    """A model's stage moves through the gates, and what they leave behind: the history,
    the evaluations, the gate outcomes."""

    def transition(
        self,
        model_id: str,
        version: str | int,
        stage: StageName,
        *,
        reason: str = "",
        force: bool = False,
    ) -> ModelRead:
        tenant = self._need(Permission.WRITE)
        if force:
            # Editors move through the gates; skipping them is an admin's call.
            self._need(Permission.ADMIN)
        # The REST body's limits hold for every door (a 5,000-character reason...).
        checked(StageChange, version=str(version), stage=stage, reason=reason, force=force)
        result = self._s.lifecycle.transition_stage(
            tenant,
            model_id,
            version,
            stage,
            actor=self._who.subject,
            reason=reason,
            force=force,
        )
        return ModelRead.of(result.model)

    def rollback(self, model_id: str, *, reason: str = "") -> ModelRead:
        tenant = self._need(Permission.WRITE)
        checked(RollbackRequest, reason=reason)
        result = self._s.lifecycle.rollback(
            tenant, model_id, actor=self._who.subject, reason=reason
        )
        return ModelRead.of(result.model)

    def history(self, model_id: str) -> Page[MoveRead]:
        tenant = self._need(Permission.READ)
        moves = self._s.lifecycle.history(tenant, model_id)
        return Page(items=[MoveRead(**m.__dict__) for m in moves])

    def production_at(self, model_id: str, at: datetime | None = None) -> ProductionAt:
        tenant = self._need(Permission.READ)
        when = at or datetime.now(UTC)
        if when.tzinfo is None:
            # A time without a zone is read as UTC, as the API reads one.
            when = when.replace(tzinfo=UTC)
        version = self._s.lifecycle.production_at(tenant, model_id, when)
        return ProductionAt(model_id=model_id, at=when, version=version)

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
        tenant = self._need(Permission.WRITE)
        checked(
            EvaluationCreate,
            kind=kind,
            passed=passed,
            metrics=dict(metrics) if metrics else {},
            notes=notes,
        )
        # The key's subject records it (evidence, not a person's decision: no four eyes).
        e = self._s.lifecycle.reviews.record_evaluation(
            tenant,
            model_id,
            version,
            kind=kind,
            passed=passed,
            metrics=dict(metrics) if metrics else {},
            notes=notes,
            actor=self._who.subject,
        )
        return EvaluationRead(**e.__dict__)

    def list_evaluations(self, model_id: str, version: str | int) -> Page[EvaluationRead]:
        tenant = self._need(Permission.READ)
        items = self._s.lifecycle.reviews.list_evaluations(tenant, model_id, version)
        return Page(items=[EvaluationRead(**e.__dict__) for e in items])

    def gates(self, model_id: str, version: str | int) -> Page[GateEvidenceRead]:
        tenant = self._need(Permission.READ)
        items = self._s.lifecycle.gate_evidence(tenant, model_id, version)
        return Page(items=[GateEvidenceRead(**g) for g in items])


@implements(ApprovalsContract)
class LocalApprovals(Door):
    """Four-eyes approvals of staging versions for production.

    Requests and decisions carry the caller's owner, not its key's name: four eyes
    compares people, so one person's two keys are one person.
    """

    def request(self, model_id: str, version: str | int, *, comment: str = "") -> ApprovalRead:
        tenant = self._need(Permission.WRITE)
        checked(ApprovalCreate, comment=comment)
        a = self._s.lifecycle.reviews.request_approval(
            tenant, model_id, version, actor=self._who.owner, comment=comment
        )
        return ApprovalRead(**a.__dict__)

    def list(
        self, *, status: ApprovalStatusName | None = None, model_id: str | None = None
    ) -> Page[ApprovalRead]:
        tenant = self._need(Permission.READ)
        items = self._s.lifecycle.reviews.list_approvals(tenant, status, model_id)
        return Page(items=[ApprovalRead(**a.__dict__) for a in items])

    def get(self, approval_id: int) -> ApprovalRead:
        tenant = self._need(Permission.READ)
        return ApprovalRead(**self._s.lifecycle.reviews.get_approval(tenant, approval_id).__dict__)

    def approve(self, approval_id: int, *, reason: str = "") -> ApprovalRead:
        return self._decide(approval_id, approve=True, reason=reason)

    def reject(self, approval_id: int, *, reason: str = "") -> ApprovalRead:
        return self._decide(approval_id, approve=False, reason=reason)

    def _decide(self, approval_id: int, *, approve: bool, reason: str) -> ApprovalRead:
        tenant = self._need(Permission.APPROVE)
        checked(ApprovalDecision, reason=reason)
        a = self._s.lifecycle.reviews.decide(
            tenant, approval_id, actor=self._who.owner, approve=approve, reason=reason
        )
        return ApprovalRead(**a.__dict__)
