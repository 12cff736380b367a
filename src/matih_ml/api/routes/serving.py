"""Serving: predict by stage, alias or version; shadow and A/B; monitoring; /metrics."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute, parse_json
from matih_ml.api.deps import Reader, ServicesDep, Writer
from matih_ml.api.params import ModelId
from matih_ml.api.routes._common import ERRORS
from matih_ml.auth.principal import Permission, Principal
from matih_ml.auth.scrape_token import check_scrape_token
from matih_ml.contracts.schemas import (
    EvaluationRead,
    EvidenceCreate,
    EvidenceRead,
    MonitoringRead,
    PredictionRead,
    ServingConfigRead,
    ServingConfigWrite,
    TrafficSummaryRead,
)
from matih_ml.errors import (
    ForbiddenError,
    PayloadTooLargeError,
    ValidationError,
)
from matih_ml.serving.resolver import Target, WouldBlock, loadable_by_viewer
from matih_ml.serving.service import EvidenceCriteria, Prediction, PredictionService

router = APIRouter(
    prefix="/api/v1/models", tags=["serving"], responses=ERRORS, route_class=JsonBodyRoute
)
metrics_router = APIRouter(tags=["health"])

# One request's records; larger inputs go to predict:batch, which scores in chunks.
MAX_RECORDS = 1_000
MAX_BATCH_RECORDS = 100_000
_CHUNK = 10_000
# Bodies up to this size (a few dozen records) may be scored on the event loop.
_ON_LOOP_BYTES = 4096


_create_lock = threading.Lock()


def get_serving_of(app: Any) -> PredictionService:
    """The app's PredictionService, built on first use (one per app)."""
    found = getattr(app.state, "serving", None)
    if found is None:
        with _create_lock:
            found = getattr(app.state, "serving", None)
            if found is None:
                found = app.state.serving = PredictionService(app.state.services)
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


def _target(stage: str | None, alias: str | None, version: str | None) -> Target | None:
    # None (rather than production) lets A/B mode choose the arm.
    return Target.parse(stage, alias, version) if (stage or alias or version) else None


def _require_loadable(
    serving: PredictionService,
    who: Principal,
    model_id: str,
    target: Target | None,
    *,
    blocking: bool = True,
) -> None:
    """Refuse a reader who names a version that is neither in staging nor in production.

    Editors may score any version; the stage comes from the resolver's cached answer, so
    a stage target (the hot path) costs nothing here. Another tenant's model was a 404
    before this (the resolver finds nothing), never a 403.

    Raises:
        ForbiddenError: A viewer naming (by number or alias) a development or archived
            version.
        WouldBlock: ``blocking`` is False and the answer is not cached.
    """
    if target is None or target.kind == "stage" or who.can(Permission.WRITE):
        return
    found = serving.resolver.resolved(who.tenant_id, model_id, target, blocking=blocking)
    if not loadable_by_viewer(target, found):
        assert found is not None
        raise ForbiddenError(
            f"Version {found.version} of {model_id!r} is in {found.stage}: scoring a version "
            "that is not in staging or production needs the 'write' permission (an editor).",
            details={
                "permission": Permission.WRITE.value,
                "model_id": model_id,
                "version": found.version,
                "stage": found.stage,
            },
        )


def _body(raw: bytes, limit: int) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.", details={"field": "body"})
    rows = body.get("records", body.get("inputs"))
    if isinstance(rows, list) and len(rows) > limit:
        raise PayloadTooLargeError(
            f"At most {limit} records per request; use predict:batch for more.",
            details={"limit": limit},
        )
    return body


@router.post("/{model_id}/predict", response_model=PredictionRead, openapi_extra=_BODY)
async def predict(
    model_id: ModelId,
    request: Request,
    serving: ServingDep,
    who: Reader,
    stage: StageQ = None,
    alias: AliasQ = None,
    version: VersionQ = None,
) -> Response:
    """Score up to 1,000 records with the production version, or the one asked for."""
    raw = await request.body()
    target = _target(stage, alias, version)
    if len(raw) <= _ON_LOOP_BYTES:
        # A small request whose version is loaded and fresh is scored right here: a
        # thread-pool hop costs more than scoring a few rows. Anything that would read
        # the database or load a model raises WouldBlock and goes to the pool.
        body = _body(raw, MAX_RECORDS)
        try:
            _require_loadable(serving, who, model_id, target, blocking=False)
            return _answer(serving.predict(who.tenant_id, model_id, body, target, blocking=False))
        except WouldBlock:
            pass

    def run() -> Response:
        _require_loadable(serving, who, model_id, target)
        return _answer(serving.predict(who.tenant_id, model_id, _body(raw, MAX_RECORDS), target))

    return await run_in_threadpool(run)


def _answer(p: Prediction) -> Response:
    # Serialised once, here: returning the model would have FastAPI validate it again.
    return Response(json.dumps(asdict(p)), media_type="application/json")


@router.post("/{model_id}/predict:batch", response_model=PredictionRead, openapi_extra=_BODY)
async def predict_batch(
    model_id: ModelId,
    request: Request,
    serving: ServingDep,
    who: Reader,
    stage: StageQ = None,
    alias: AliasQ = None,
    version: VersionQ = None,
) -> PredictionRead:
    """Score up to 100,000 records, in chunks of 10,000, with one version throughout."""
    raw = await request.body()
    target = _target(stage, alias, version)

    def run() -> PredictionRead:
        # Checked once, for the target asked for: the pinned chunks after the first are
        # the version that target named, even if a promotion archives it meanwhile.
        _require_loadable(serving, who, model_id, target)
        body = _body(raw, MAX_BATCH_RECORDS)
        field = "inputs" if "inputs" in body else "records"
        rows = body.get(field)
        if not isinstance(rows, list) or not rows:
            raise ValidationError(f"{field} must be a non-empty list.", details={"field": field})
        # The first chunk fixes the version, so a promotion mid-batch cannot mix two.
        first = serving.predict(who.tenant_id, model_id, {field: rows[:_CHUNK]}, target)
        pinned = Target("version", first.version)
        out, latency = list(first.predictions), first.latency_ms
        for i in range(_CHUNK, len(rows), _CHUNK):
            part = serving.predict(who.tenant_id, model_id, {field: rows[i : i + _CHUNK]}, pinned)
            out.extend(part.predictions)
            latency += part.latency_ms
        return PredictionRead(
            model_id=model_id,
            version=first.version,
            target=first.target,
            predictions=out,
            latency_ms=latency,
        )

    return await run_in_threadpool(run)


@router.get("/{model_id}/serving", response_model=ServingConfigRead)
def get_serving_config(
    model_id: ModelId, services: ServicesDep, serving: ServingDep, who: Reader
) -> ServingConfigRead:
    """The model's traffic mode: off, shadow or A/B."""
    services.registry.require_model(who.tenant_id, model_id)
    return ServingConfigRead(
        model_id=model_id, **asdict(serving.traffic.config(who.tenant_id, model_id))
    )


@router.put("/{model_id}/serving", response_model=ServingConfigRead)
def set_serving_config(
    model_id: ModelId,
    body: ServingConfigWrite,
    services: ServicesDep,
    serving: ServingDep,
    who: Writer,
) -> ServingConfigRead:
    """Set the traffic mode: ``shadow`` (staging scores a copy of each request) or ``ab``
    (``ab_share`` of production traffic is answered by staging)."""
    services.registry.require_model(who.tenant_id, model_id)
    cfg = serving.traffic.set_config(who.tenant_id, model_id, body.mode, body.ab_share, who.subject)
    return ServingConfigRead(model_id=model_id, **asdict(cfg))


@router.get("/{model_id}/serving/summary", response_model=TrafficSummaryRead)
def traffic_summary(
    model_id: ModelId,
    serving: ServingDep,
    who: Reader,
    mode: Annotated[str, Query(pattern="^(shadow|ab)$")] = "shadow",
) -> TrafficSummaryRead:
    """What shadow or A/B traffic has shown about the staging version so far."""
    return TrafficSummaryRead(**asdict(serving.summary(who.tenant_id, model_id, mode)))


@router.post("/{model_id}/serving/evidence", status_code=201, response_model=EvidenceRead)
def record_evidence(
    model_id: ModelId, body: EvidenceCreate, serving: ServingDep, who: Writer
) -> EvidenceRead:
    """Judge the staging version's live traffic and record it as the evaluation the
    staging→production gate reads (passed or not, with the reasons)."""
    criteria = EvidenceCriteria(
        body.min_samples,
        body.min_agreement,
        body.max_error_rate,
        body.max_latency_ratio,
        body.latency_slack_ms,
    )
    summary, evaluation, reasons = serving.record_evidence(
        who.tenant_id, model_id, body.kind, criteria, who.subject
    )
    return EvidenceRead(
        summary=TrafficSummaryRead(**asdict(summary)),
        evaluation=EvaluationRead(**evaluation.__dict__),
        reasons=reasons,
    )


@router.get("/{model_id}/monitoring", response_model=MonitoringRead)
def monitoring(
    model_id: ModelId, serving: ServingDep, who: Reader, version: VersionQ = None
) -> MonitoringRead:
    """A served version's figures (production's by default): drift per feature,
    prediction shift, latency p50/p95 against the SLA, error rate, and alarms."""
    # The figures load the version (its reference profile): the same rule as predict.
    _require_loadable(serving, who, model_id, Target.parse(version=version) if version else None)
    f = serving.monitoring(who.tenant_id, model_id, version)
    resolved = version or serving.resolver.resolve(who.tenant_id, model_id, Target.parse())
    return MonitoringRead(model_id=model_id, version=str(resolved), **asdict(f))


@metrics_router.get("/metrics", include_in_schema=False)
def prometheus(request: Request) -> Response:
    """Prometheus metrics, for the scrape token only (tenants' keys do not open it: it
    names every tenant and model). See ``matih_ml.auth.scrape_token``."""
    settings = request.app.state.services.settings
    check_scrape_token(settings, request.headers.get("authorization", ""))
    serving = get_serving_of(request.app)
    return Response(
        serving.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
