"""Where MLflow's protocol is answered on the service's port."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from matih_ml.api.mlflow.door import MlflowDoor
from matih_ml.api.quotas import limiter_of

# MLflow's client and web UI call these; each is answered by the door.
PREFIXES = (
    "/api/2.0/mlflow/",
    "/api/3.0/mlflow/",
    "/api/2.0/mlflow-artifacts/",
    "/ajax-api/",
)
EXACT = (
    "/api/2.0/mlflow-artifacts/artifacts",
    "/get-artifact",
    "/model-versions/get-artifact",
    "/graphql",
    # Sic: MLflow registers this path without the slash (refused, but answered in kind).
    "/api/2.0mlflow/experiments/search-datasets",
)
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

router = APIRouter(include_in_schema=False)


def door_of(request: Request) -> MlflowDoor:
    """The door, built on first use from the app's services."""
    door = getattr(request.app.state, "mlflow_door", None)
    if door is None:
        door = request.app.state.mlflow_door = MlflowDoor(
            request.app.state.services, limiter_of(request.app)
        )
    return door


async def _answer(request: Request) -> Response:
    return await door_of(request).handle(request, request.scope["path"])


for _prefix in PREFIXES:
    router.add_api_route(_prefix + "{rest:path}", _answer, methods=_METHODS)
for _path in EXACT:
    router.add_api_route(_path, _answer, methods=_METHODS)
