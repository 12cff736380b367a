"""The MLflow connection: process-wide flags, and the client the services share.

MLflow reads a few process-wide switches from the environment. They are the
same for every tenant (workspaces on, telemetry off, the server-side artifact
root), so setting them once per process is safe. The *tenant* is never put in
the environment: see :mod:`matih_ml.tenancy`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from matih_ml.config import Settings
from matih_ml.mlflow_adapter import stores

_configure_lock = threading.Lock()

# SQLite waits this long for a competing writer before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60
PG_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class MlflowBackend:
    """An MLflow client bound to the configured tracking and registry stores.

    Attributes:
        settings: The settings it was built from.
        client: A client for both tracking and registry calls. It is thread-safe:
            it holds no per-request state; the tenant comes from the context.
    """

    settings: Settings
    client: MlflowClient

    @property
    def tracking_uri(self) -> str:
        """The effective tracking URI (with SQLite tuning applied)."""
        return stores.tracking_uri(self.client)

    @property
    def registry_uri(self) -> str:
        """The effective registry URI (with SQLite tuning applied)."""
        return stores.registry_uri(self.client)


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def tune_sql_uri(uri: str) -> str:
    """Tune an MLflow SQL store URI: SQLite's locking, PostgreSQL's connect timeout.

    SQLite gets WAL mode (readers run while one writer writes) and a long busy
    timeout (concurrent writers queue instead of failing with "database is
    locked"). PostgreSQL gets a short connect timeout, so that a database that is
    down fails requests in seconds rather than hanging them.
    """
    if uri.startswith("postgresql") and "connect_timeout=" not in uri:
        return f"{uri}{'&' if '?' in uri else '?'}connect_timeout={PG_CONNECT_TIMEOUT_S}"
    path = _sqlite_path(uri)
    if path is None:
        return uri
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    if "timeout=" in uri:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}timeout={SQLITE_BUSY_TIMEOUT_S}"


def configure_process(settings: Settings) -> None:
    """Set MLflow's process-wide switches (idempotent).

    Args:
        settings: Where the default artifact root comes from.
    """
    with _configure_lock:
        os.environ["MLFLOW_ENABLE_WORKSPACES"] = "true"
        # The service runs with no internet; telemetry would only time out.
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        os.environ["DO_NOT_TRACK"] = "true"
        # botocore's legacy retries back off for many seconds while S3 is down; a
        # request should fail with 503 soon instead. An operator's setting wins.
        os.environ.setdefault("AWS_RETRY_MODE", "standard")
        os.environ.setdefault("AWS_MAX_ATTEMPTS", "3")
        os.environ.setdefault(stores.SERVER_ARTIFACT_ROOT_ENV, settings.artifact_root)


def use_as_mlflow_default(backend: MlflowBackend) -> None:
    """Point MLflow's fluent API at ``backend``'s stores, for user code in this process.

    This is what lets ``mlflow.pyfunc.load_model("models:/NAME/Production")`` in a
    script reach the same registry. MLflow records it in the process environment,
    which is harmless here: it names the store, never a tenant.
    """
    import mlflow

    mlflow.set_tracking_uri(backend.tracking_uri)
    mlflow.set_registry_uri(backend.registry_uri)


def connect(settings: Settings) -> MlflowBackend:
    """Build the MLflow backend for ``settings``, creating the embedded store if needed.

    Args:
        settings: The service settings.

    Returns:
        A backend whose client talks to the configured stores.
    """
    settings.ensure_local_dirs()
    configure_process(settings)
    tracking_uri = tune_sql_uri(settings.tracking_uri)
    registry_uri = (
        tracking_uri
        if settings.registry_uri == settings.tracking_uri
        else tune_sql_uri(settings.registry_uri)
    )
    return MlflowBackend(
        settings=settings,
        client=MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri),
    )
