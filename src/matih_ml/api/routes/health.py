"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from matih_ml.api.deps import ServicesDep
from matih_ml.contracts.schemas import Health
from matih_ml.local.health import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(services: ServicesDep, request: Request) -> JSONResponse:
    """Each dependency answers: the service database, the MLflow store and the
    artifact store. A load balancer takes a replica out while any one is down. A replica
    that has just started is not ready until the versions it served before are loaded
    again (``models``), so that a deploy shows no first-request load."""

    checks = readiness(services)
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:
        checks["models"] = "ok" if serving.warm.is_set() else "loading"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
