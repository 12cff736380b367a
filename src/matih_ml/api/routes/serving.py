"""Serving: predict by stage, alias or version; shadow and A/B; monitoring; /metrics."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute, parse_json
from matih_ml.api.deps import SECURITY, Reader, ServicesDep, Writer, caller_with
from matih_ml.api.params import ModelId
from matih_ml.api.quotas import limiter_of
from matih_ml.api.routes._common import ERRORS
from matih_ml.auth.principal import Permission
from matih_ml.auth.scrape_token import check_scrape_token
from matih_ml.contracts.names import EvaluationKindName
from matih_ml.contracts.schemas import (
    EvidenceCreate,
    EvidenceRead,
    MonitoringRead,
    PredictionRead,
    ServingConfigRead,
    ServingConfigWrite,
    TrafficSummaryRead,
)
from matih_ml.errors import ValidationError
from matih_ml.local import LocalClient
from matih_ml.local.serving import MAX_RECORDS, check_rows, require_loadable, target_of
from matih_ml.serving.resolver import WouldBlock
from matih_ml.serving.service import Prediction, PredictionService

router = APIRouter(
    prefix="/api/v1/models", tags=["serving"], responses=ERRORS, route_class=JsonBodyRoute
)
metrics_router = APIRouter(tags=["health"])

# Bodies up to this size (a few dozen records) may be scored on the event loop.
_ON_LOOP_BYTES = 4096


def get_serving_of(app: Any) -> PredictionService:
    """The app's PredictionService: its services' one (``Services.serving``), which the
    in-process doors score with too; kept on ``app.state.serving`` for /readyz."""
    found = getattr(app.state, "serving", None)
    if found is None:
        found = app.state.serving = app.state.services.serving
    return found


async def get_serving(request: Request) -> PredictionService:
    """The app's PredictionService."""
    return get_serving_of(request.app)


ServingDep = Annotated[PredictionService, Depends(get_serving)]
StageQ = Annotated[
    str | None, Query(description="production (the default) or staging", max_length=20)
]
AliasQ = Annotated[str | None, Query(description="A registered alias", max_length=250)]
VersionQ = Annotated[str | None, Query(description="A version number", max_length=20)]

_BODY = {
    "requestBody": {
        "required": True,
        "description": '`{"records": [{"feature": value, ...}]}` for a model with a column '
        'signature (sklearn), or `{"inputs": [[...]]}` for a tensor one (PyTorch, ONNX).',
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "records": {"type": "array", "items": {"type": "object"}},
                        "inputs": {"type": "array"},
                    },
                }
            }
        },
    }
}


def _object(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.", details={"field": "body"})
    return body


def _body(raw: bytes, limit: int) -> dict[str, Any]:
    body = _object(raw)
    check_rows(body, limit)
    return body


@router.post(
    "/{model_id}/predict",
    response_model=PredictionRead,
    openapi_extra={**_BODY, "security": SECURITY},
)
async def predict(
    model_id: ModelId,
    request: Request,
    stage: StageQ = None,
    alias: AliasQ = None,
    version: VersionQ = None,
) -> Response:
    """Score up to 1,000 records with the production version, or the one asked for."""
    # The hot path, so not through the door (LocalServing.predict): that is synchronous
    # and answers a model FastAPI would validate again. Here a small request on a cached
    # version is scored on the event loop, and the answer is serialised once. Both make
    # the same checks and the same service call (matih_ml.local.serving's functions).
    # The caller is read as Reader reads it, without FastAPI's dependency solving.
    who = await caller_with(request, Permission.READ)
    serving = get_serving_of(request.app)
    raw = await request.body()
    target = target_of(stage, alias, version)
    if len(raw) <= _ON_LOOP_BYTES:
        # A small request whose version is loaded and fresh is scored right here: a
        # thread-pool hop costs more than scoring a few rows. Anything that would read
        # the database or load a model raises WouldBlock and goes to the pool.
        body = _body(raw, MAX_RECORDS)
        try:
            require_loadable(serving, who, model_id, target, blocking=False)
            return _answer(serving.predict(who.tenant_id, model_id, body, target, blocking=False))
        except WouldBlock:
            pass

    def run() -> Response:
        require_loadable(serving, who, model_id, target)
        return _answer(serving.predict(who.tenant_id, model_id, _body(raw, MAX_RECORDS), target))

    return await run_in_threadpool(run)


def _answer(p: Prediction) -> Response:
    # Serialised once, here: returning the model would have FastAPI validate it again.
    return Response(json.dumps(asdict(p)), media_type="application/json")


@router.post("/{model_id}/predict:batch", response_model=PredictionRead, openapi_extra=_BODY)
async def predict_batch(
    model_id: ModelId,
    request: Request,
    services: ServicesDep,
    who: Reader,
    stage: StageQ = None,
    alias: AliasQ = None,
    version: VersionQ = None,
) -> PredictionRead:
    """Score up to 100,000 records, in chunks of 10,000, with one version throughout."""
    raw = await request.body()

    def run() -> PredictionRead:
        body = _object(raw)
        return LocalClient(services, who).serving.predict_batch(
            model_id,
            records=body.get("records"),
            inputs=body.get("inputs"),
            stage=stage,
            alias=alias,
            version=version,
        )

    return await run_in_threadpool(run)


@router.get("/{model_id}/serving", response_model=ServingConfigRead)
def get_serving_config(model_id: ModelId, services: ServicesDep, who: Reader) -> ServingConfigRead:
    """The model's traffic mode: off, shadow or A/B."""
    return LocalClient(services, who).serving.get_config(model_id)


@router.put("/{model_id}/serving", response_model=ServingConfigRead)
def set_serving_config(
    model_id: ModelId,
    body: ServingConfigWrite,
    services: ServicesDep,
    who: Writer,
) -> ServingConfigRead:
    """Set the traffic mode: ``shadow`` (staging scores a copy of each request) or ``ab``
    (``ab_share`` of production traffic is answered by staging)."""
    return LocalClient(services, who).serving.set_config(
        model_id, body.mode, ab_share=body.ab_share
    )


@router.get("/{model_id}/serving/summary", response_model=TrafficSummaryRead)
def traffic_summary(
    model_id: ModelId,
    services: ServicesDep,
    who: Reader,
    mode: Annotated[str, Query(pattern="^(shadow|ab)$")] = "shadow",
) -> TrafficSummaryRead:
    """What shadow or A/B traffic has shown about the staging version so far."""
    # The pattern admits the two names only.
    kind = cast(EvaluationKindName, mode)
    return LocalClient(services, who).serving.summary(model_id, mode=kind)


@router.post("/{model_id}/serving/evidence", status_code=201, response_model=EvidenceRead)
def record_evidence(
    model_id: ModelId, body: EvidenceCreate, services: ServicesDep, who: Writer
) -> EvidenceRead:
    """Judge the staging version's live traffic and record it as the evaluation the
    staging→production gate reads (passed or not, with the reasons)."""
    return LocalClient(services, who).serving.record_evidence(model_id, body)


@router.get("/{model_id}/monitoring", response_model=MonitoringRead)
def monitoring(
    model_id: ModelId, services: ServicesDep, who: Reader, version: VersionQ = None
) -> MonitoringRead:
    """A served version's figures (production's by default): drift per feature,
    prediction shift, latency p50/p95 against the SLA, error rate, and alarms."""
    return LocalClient(services, who).serving.monitoring(model_id, version=version)


@metrics_router.get("/metrics", include_in_schema=False)
def prometheus(request: Request) -> Response:
    """Prometheus metrics, for the scrape token only (tenants' keys do not open it: it
    names every tenant and model). See ``matih_ml.auth.scrape_token``."""
    settings = request.app.state.services.settings
    check_scrape_token(settings, request.headers.get("authorization", ""))
    serving = get_serving_of(request.app)
    # The per-tenant limits' figures (throttled requests, current usage) follow serving's.
    limiter = limiter_of(request.app)
    limits = limiter.exposition() if limiter is not None else b""
    return Response(
        serving.metrics.exposition() + limits,
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
