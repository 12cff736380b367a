"""A model's lifecycle: history, production at a time, rollback, evaluations, gates,
approval requests, and its policy override."""

from __future__ import annotations

from datetime import datetime
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
    return LocalClient(services, who).lifecycle.history(model_id)


@router.get("/{model_id}/production", response_model=ProductionAt)
def production_at(
    model_id: ModelId,
    services: ServicesDep,
    who: Reader,
    at: Annotated[datetime | None, Query(description="ISO 8601 time; default now")] = None,
) -> ProductionAt:
    """Which version served production at a time."""
    return LocalClient(services, who).lifecycle.production_at(model_id, at)


@router.post("/{model_id}/rollback", response_model=ModelRead)
def rollback(
    model_id: ModelId, body: RollbackRequest, services: ServicesDep, who: Writer
) -> ModelRead:
    """Put the previous production version back; the current one goes to development."""
    return LocalClient(services, who).lifecycle.rollback(model_id, reason=body.reason)


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
    return LocalClient(services, who).lifecycle.record_evaluation(
        model_id,
        version,
        kind=body.kind,
        passed=body.passed,
        metrics=body.metrics,
        notes=body.notes,
    )


@router.get("/{model_id}/versions/{version}/evaluations", response_model=Page[EvaluationRead])
def list_evaluations(
    model_id: ModelId, version: Version, services: ServicesDep, who: Reader
) -> Page[EvaluationRead]:
    """A version's evaluations."""
    return LocalClient(services, who).lifecycle.list_evaluations(model_id, version)


@router.get("/{model_id}/versions/{version}/gates", response_model=Page[GateEvidenceRead])
def gate_evidence(
    model_id: ModelId, version: Version, services: ServicesDep, who: Reader
) -> Page[GateEvidenceRead]:
    """The gate outcomes stored on a version, passed or failed, with reasons."""
    return LocalClient(services, who).lifecycle.gates(model_id, version)


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
    return LocalClient(services, who).approvals.request(model_id, version, comment=body.comment)


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
