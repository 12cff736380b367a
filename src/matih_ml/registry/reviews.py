"""Evidence for the production gate: shadow/A-B evaluations and four-eyes approvals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from matih_ml import validation
from matih_ml.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from matih_ml.events.catalog import EventType
from matih_ml.registry.metadata import Stage
from matih_ml.registry.service import RegistryService
from matih_ml.store import lifecycle_store as store
from matih_ml.store.db import Database
from matih_ml.store.models import ApprovalRow, EvaluationRow

_EVALUATION_KINDS = ("shadow", "ab")


@dataclass
class Approval:
    """A request to promote a version to production."""

    id: int
    model_id: str
    version: str
    status: str
    requested_by: str
    requested_at: datetime
    comment: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str


@dataclass
class Evaluation:
    """A recorded shadow or A/B evaluation."""

    id: int
    model_id: str
    version: str
    kind: str
    passed: bool
    metrics: dict[str, float]
    notes: str
    recorded_by: str
    at: datetime


def _approval(row: ApprovalRow) -> Approval:
    return Approval(
        row.id,
        row.model_name,
        str(row.version),
        row.status,
        row.requested_by,
        store.aware(row.requested_at),
        row.comment,
        row.decided_by,
        store.aware(row.decided_at),
        row.reason,
    )


def _evaluation(row: EvaluationRow) -> Evaluation:
    return Evaluation(
        row.id,
        row.model_name,
        str(row.version),
        row.kind,
        row.passed,
        row.metrics or {},
        row.notes,
        row.recorded_by,
        store.aware(row.at),
    )


class ReviewService:
    """Records evaluations and runs approval requests for a tenant's versions.

    Args:
        registry: The registry (to check that versions exist in the tenant).
        db: The service database.
        current_stage: Reads a version's stage inside a unit of work (the lifecycle's).
    """

    def __init__(
        self,
        registry: RegistryService,
        db: Database,
        current_stage: Callable[[Session, str, str, str], Stage],
    ) -> None:
        self._registry = registry
        self._db = db
        self._current_stage = current_stage

    def record_evaluation(
        self,
        tenant_id: str,
        model_id: str,
        version: str | int,
        *,
        kind: str,
        passed: bool,
        metrics: dict[str, float] | None = None,
        notes: str = "",
        actor: str = "",
    ) -> Evaluation:
        """Record a shadow or A/B evaluation of a version (evidence for production)."""
        name = validation.model_name(model_id)
        number = validation.version(version)
        if kind not in _EVALUATION_KINDS:
            raise ValidationError(
                f"kind must be one of {_EVALUATION_KINDS}, got {kind!r}.", details={"field": "kind"}
            )
        clean = validation.metrics(metrics or {})
        self._registry.get_version(tenant_id, name, number)
        with self._db.uow(tenant=tenant_id) as s:
            row = EvaluationRow(
                tenant_id=tenant_id,
                model_name=name,
                version=int(number),
                kind=kind,
                passed=passed,
                metrics=clean,
                notes=notes[:5000],
                recorded_by=actor,
                at=store.now(),
            )
            s.add(row)
            s.flush()
            return _evaluation(row)

    def list_evaluations(
        self, tenant_id: str, model_id: str, version: str | int
    ) -> list[Evaluation]:
        """A version's evaluations, oldest first."""
        name = validation.model_name(model_id)
        number = validation.version(version)
        self._registry.get_version(tenant_id, name, number)
        with self._db.uow(tenant=tenant_id) as s:
            return [_evaluation(r) for r in store.evaluations(s, tenant_id, name, int(number))]

    def request_approval(
        self, tenant_id: str, model_id: str, version: str | int, *, actor: str, comment: str = ""
    ) -> Approval:
        """Ask for a version to be approved for production (it must be in staging).

        ``actor`` is the requester's owner (a person or service account, not a key's
        name): :meth:`decide` compares it with the approver's. A pending request for the
        same version is returned instead of a second one.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        self._registry.get_version(tenant_id, name, number)
        with self._db.uow(tenant=tenant_id) as s:
            store.lock_model(s, tenant_id, name)
            stage = self._current_stage(s, tenant_id, name, number)
            if stage is not Stage.STAGING:
                raise ConflictError(
                    f"Version {number} of {name!r} is in {stage.value}; only a staging version "
                    "can be put up for approval.",
                    details={"stage": stage.value},
                )
            pending = s.scalars(
                select(ApprovalRow).where(
                    ApprovalRow.model_name == name,
                    ApprovalRow.version == int(number),
                    ApprovalRow.status == "pending",
                )
            ).first()
            if pending is not None:
                return _approval(pending)
            row = ApprovalRow(
                tenant_id=tenant_id,
                model_name=name,
                version=int(number),
                status="pending",
                requested_by=actor,
                requested_at=store.now(),
                comment=comment[:5000],
            )
            s.add(row)
            s.flush()
            self._registry.events.emit(
                s,
                tenant_id,
                EventType.APPROVAL_REQUESTED,
                name,
                {
                    "approval_id": row.id,
                    "model": name,
                    "version": number,
                    "requested_by": actor,
                    "comment": row.comment,
                },
            )
            return _approval(row)

    def decide(
        self, tenant_id: str, approval_id: int, *, actor: str, approve: bool, reason: str = ""
    ) -> Approval:
        """Approve or reject a pending request. The approver may not be the requester.

        ``actor`` is the approver's owner. Owners are compared, never key names: one
        person's two keys are one person, and two people's keys are two, whatever the
        keys are called.

        Raises:
            NotFoundError: For an unknown request (or another tenant's).
            ForbiddenError: When the approver is the requester (four eyes).
            ConflictError: When it was decided already.
            ValidationError: A rejection without a reason.
        """
        if not approve and not reason.strip():
            raise ValidationError("A rejection needs a reason.", details={"field": "reason"})
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None:  # another tenant's is not found either
                raise NotFoundError(f"Approval request {approval_id} not found.")
            if row.status != "pending":
                raise ConflictError(
                    f"Approval request {approval_id} is already {row.status}.",
                    details={"status": row.status},
                )
            if row.requested_by == actor:
                raise ForbiddenError(
                    "The requester of a promotion cannot approve or reject it, with this key "
                    "or any other key of the same owner (four eyes).",
                    details={"requested_by": row.requested_by},
                )
            row.status = "approved" if approve else "rejected"
            row.decided_by = actor
            row.decided_at = store.now()
            row.reason = reason[:5000]
            self._registry.events.emit(
                s,
                tenant_id,
                EventType.APPROVAL_APPROVED if approve else EventType.APPROVAL_REJECTED,
                row.model_name,
                {
                    "approval_id": row.id,
                    "model": row.model_name,
                    "version": str(row.version),
                    "requested_by": row.requested_by,
                    "decided_by": actor,
                    "reason": row.reason,
                },
            )
            return _approval(row)

    def list_approvals(
        self, tenant_id: str, status: str | None = None, model_id: str | None = None
    ) -> list[Approval]:
        """The tenant's approval requests, newest first."""
        if status is not None and status not in ("pending", "approved", "rejected", "applied"):
            raise ValidationError(
                f"Unknown approval status {status!r}.", details={"field": "status"}
            )
        q = select(ApprovalRow)
        if status:
            q = q.where(ApprovalRow.status == status)
        if model_id:
            q = q.where(ApprovalRow.model_name == validation.model_name(model_id))
        with self._db.uow(tenant=tenant_id) as s:
            return [_approval(r) for r in s.scalars(q.order_by(ApprovalRow.id.desc()))]

    def get_approval(self, tenant_id: str, approval_id: int) -> Approval:
        """One approval request of the tenant."""
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None:  # another tenant's is not found either
                raise NotFoundError(f"Approval request {approval_id} not found.")
            return _approval(row)
