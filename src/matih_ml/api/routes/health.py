"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from matih_ml.api.deps import ServicesDep
from matih_ml.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(services: ServicesDep) -> JSONResponse:
    """Each dependency answers: the service database and the MLflow store."""
    checks: dict[str, str] = {}
    try:
        with services.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a readiness probe reports, never raises
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        services.backend.client.list_workspaces()
        checks["mlflow"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["mlflow"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
