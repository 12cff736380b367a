"""A model's lifecycle: history, production at a time, rollback, evaluations, gates,
approval requests, and its policy override."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Admin, Reader, ServicesDep, Writer
from matih_ml.api.params import ModelId, Version
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.policy import Policy
from matih_ml.contracts.schemas import (
    ApprovalCreate,
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
)
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1/models", tags=["lifecycle"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.get("/{model_id}/history", response_model=Page[MoveRead])
def history(model_id: ModelId, services: ServicesDep, who: Reader) -> Page[MoveRead]:
    """Every stage move of the model: who, when, from, to, why, evidence, forced."""
    moves = services.lifecycle.history(who.tenant_id, model_id)
    return Page(items=[MoveRead(**m.__dict__) for m in moves])


@router.get("/{model_id}/production", response_model=ProductionAt)
def production_at(
    model_id: ModelId,
    services: ServicesDep,
    who: Reader,
    at: Annotated[datetime | None, Query(description="ISO 8601 time; default now")] = None,
) -> ProductionAt:
    """Which version served production at a time."""
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    version = services.lifecycle.production_at(who.tenant_id, model_id, when)
    return ProductionAt(model_id=model_id, at=when, version=version)


@router.post("/{model_id}/rollback", response_model=ModelRead)
def rollback(
    model_id: ModelId, body: RollbackRequest, services: ServicesDep, who: Writer
) -> ModelRead:
    """Put the previous production version back; the current one goes to development."""
    result = services.lifecycle.rollback(
        who.tenant_id, model_id, actor=who.subject, reason=body.reason
    )
    return ModelRead.of(result.model)


@router.post(
    "/{model_id}/versions/{version}/evaluations", status_code=201, response_model=EvaluationRead
)
def record_evaluation(
    model_id: ModelId,
    version: Version,
    body: EvaluationCreate,
    services: ServicesDep,
    who: Writer,
) -> EvaluationRead:
    """Record a shadow or A/B evaluation: the evidence the production gate reads."""
    e = services.lifecycle.reviews.record_evaluation(
        who.tenant_id,
        model_id,
        version,
        kind=body.kind,
        passed=body.passed,
        metrics=body.metrics,
        notes=body.notes,
        actor=who.subject,
    )
    return EvaluationRead(**e.__dict__)


@router.get("/{model_id}/versions/{version}/evaluations", response_model=Page[EvaluationRead])
def list_evaluations(
    model_id: ModelId, version: Version, services: ServicesDep, who: Reader
) -> Page[EvaluationRead]:
    """A version's evaluations."""
    items = services.lifecycle.reviews.list_evaluations(who.tenant_id, model_id, version)
    return Page(items=[EvaluationRead(**e.__dict__) for e in items])


@router.get("/{model_id}/versions/{version}/gates", response_model=Page[GateEvidenceRead])
def gate_evidence(
    model_id: ModelId, version: Version, services: ServicesDep, who: Reader
) -> Page[GateEvidenceRead]:
    """The gate outcomes stored on a version, passed or failed, with reasons."""
    items = services.lifecycle.gate_evidence(who.tenant_id, model_id, version)
    return Page(items=[GateEvidenceRead(**g) for g in items])


@router.post(
    "/{model_id}/versions/{version}/approvals", status_code=201, response_model=ApprovalRead
)
def request_approval(
    model_id: ModelId,
    version: Version,
    body: ApprovalCreate,
    services: ServicesDep,
    who: Writer,
) -> ApprovalRead:
    """Ask for a staging version to be approved for production."""
    # The owner, not the key's name: four eyes compares people.
    a = services.lifecycle.reviews.request_approval(
        who.tenant_id, model_id, version, actor=who.owner, comment=body.comment
    )
    return ApprovalRead(**a.__dict__)


@router.get("/{model_id}/policy", response_model=PolicyRead)
def get_model_policy(model_id: ModelId, services: ServicesDep, who: Reader) -> PolicyRead:
    """The policy in force for the model, and where it comes from."""
    return LocalClient(services, who).policy.get(model_id)


@router.put("/{model_id}/policy", response_model=PolicyRead)
def set_model_policy(
    model_id: ModelId, body: Policy, services: ServicesDep, who: Admin
) -> PolicyRead:
    """Override the tenant's policy for this model."""
    return LocalClient(services, who).policy.set(body, model_id)


@router.delete("/{model_id}/policy", status_code=204)
def clear_model_policy(model_id: ModelId, services: ServicesDep, who: Admin) -> Response:
    """Remove the model's override; the tenant's policy applies again."""
    LocalClient(services, who).policy.clear(model_id)
    return Response(status_code=204)
