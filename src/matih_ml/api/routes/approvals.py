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
    return LocalClient(services, who).approvals.list(status=status, model_id=model_id)


@router.get("/approvals/{approval_id}", response_model=ApprovalRead)
def get_approval(approval_id: ApprovalId, services: ServicesDep, who: Reader) -> ApprovalRead:
    """One approval request."""
    return LocalClient(services, who).approvals.get(approval_id)


@router.post("/approvals/{approval_id}/approve", response_model=ApprovalRead)
def approve(
    approval_id: ApprovalId, body: ApprovalDecision, services: ServicesDep, who: Approver
) -> ApprovalRead:
    """Approve a pending request (not one of your own, by any of your keys)."""
    return LocalClient(services, who).approvals.approve(approval_id, reason=body.reason)


@router.post("/approvals/{approval_id}/reject", response_model=ApprovalRead)
def reject(
    approval_id: ApprovalId, body: ApprovalDecision, services: ServicesDep, who: Approver
) -> ApprovalRead:
    """Reject a pending request, with a reason (not one of your own)."""
    return LocalClient(services, who).approvals.reject(approval_id, reason=body.reason)


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
