"""The approvers' queue, and the tenant's promotion policy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Admin, Approver, Reader, ServicesDep
from matih_ml.api.params import ModelId
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.names import ApprovalStatusName
from matih_ml.contracts.policy import Policy
from matih_ml.contracts.schemas import ApprovalDecision, ApprovalRead, Page, PolicyRead
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1", tags=["approvals"], responses=ERRORS, route_class=JsonBodyRoute
)

ApprovalId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/approvals", response_model=Page[ApprovalRead])
def list_approvals(
    services: ServicesDep,
    who: Reader,
    status: ApprovalStatusName | None = None,
    model_id: Annotated[ModelId | None, Query()] = None,
) -> Page[ApprovalRead]:
    """The tenant's approval requests, newest first."""
    items = services.lifecycle.reviews.list_approvals(who.tenant_id, status, model_id)
    return Page(items=[ApprovalRead(**a.__dict__) for a in items])


@router.get("/approvals/{approval_id}", response_model=ApprovalRead)
def get_approval(approval_id: ApprovalId, services: ServicesDep, who: Reader) -> ApprovalRead:
    """One approval request."""
    return ApprovalRead(
        **services.lifecycle.reviews.get_approval(who.tenant_id, approval_id).__dict__
    )


@router.post("/approvals/{approval_id}/approve", response_model=ApprovalRead)
def approve(
    approval_id: ApprovalId, body: ApprovalDecision, services: ServicesDep, who: Approver
) -> ApprovalRead:
    """Approve a pending request (not one of your own, by any of your keys)."""
    a = services.lifecycle.reviews.decide(
        who.tenant_id, approval_id, actor=who.owner, approve=True, reason=body.reason
    )
    return ApprovalRead(**a.__dict__)


@router.post("/approvals/{approval_id}/reject", response_model=ApprovalRead)
def reject(
    approval_id: ApprovalId, body: ApprovalDecision, services: ServicesDep, who: Approver
) -> ApprovalRead:
    """Reject a pending request, with a reason (not one of your own)."""
    a = services.lifecycle.reviews.decide(
        who.tenant_id, approval_id, actor=who.owner, approve=False, reason=body.reason
    )
    return ApprovalRead(**a.__dict__)


@router.get("/policy", response_model=PolicyRead)
def get_policy(services: ServicesDep, who: Reader) -> PolicyRead:
    """The tenant's promotion policy (the default if none is set)."""
    return LocalClient(services, who).policy.get()


@router.put("/policy", response_model=PolicyRead)
def set_policy(body: Policy, services: ServicesDep, who: Admin) -> PolicyRead:
    """Set the tenant's promotion policy."""
    return LocalClient(services, who).policy.set(body)


@router.delete("/policy", status_code=204)
def clear_policy(services: ServicesDep, who: Admin) -> Response:
    """Go back to the default policy."""
    LocalClient(services, who).policy.clear()
    return Response(status_code=204)
