"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from sqlalchemy import text

from matih_ml.api.deps import ServicesDep
from matih_ml.contracts.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - a readiness probe reports, never raises
        return f"unavailable: {type(exc).__name__}"
    return "ok"


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(services: ServicesDep, request: Request) -> JSONResponse:
    """Each dependency answers: the service database, the MLflow store and the
    artifact store. A load balancer takes a replica out while any one is down. A replica
    that has just started is not ready until the versions it served before are loaded
    again (``models``), so that a deploy shows no first-request load."""

    def database() -> None:
        with services.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def artifacts() -> None:
        # Listing the root proves the store answers and the credentials work.
        with suppress(FileNotFoundError):
            get_artifact_repository(services.settings.artifact_root).list_artifacts()

    checks = {
        "database": _check(database),
        "mlflow": _check(services.backend.client.list_workspaces),
        "artifacts": _check(artifacts),
    }
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:
        checks["models"] = "ok" if serving.warm.is_set() else "loading"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
