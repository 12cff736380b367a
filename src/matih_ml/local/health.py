"""Whether the service's dependencies answer: the readiness both doors report."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matih_ml.services import Services


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - a readiness probe reports, never raises
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def readiness(services: Services) -> dict[str, str]:
    """One check per dependency: the service database, the MLflow store, the artifacts.

    Each is ``ok`` or ``unavailable: <error type>``; none raises.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from sqlalchemy import text

    def database() -> None:
        with services.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def artifacts() -> None:
        # Listing the root proves the store answers and the credentials work.
        with suppress(FileNotFoundError):
            get_artifact_repository(services.settings.artifact_root).list_artifacts()

    return {
        "database": _check(database),
        "mlflow": _check(services.backend.client.list_workspaces),
        "artifacts": _check(artifacts),
    }
