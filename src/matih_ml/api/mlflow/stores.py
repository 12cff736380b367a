"""MLflow's server handlers, pointed at the service's own stores for one call.

MLflow's Flask views find their stores through ``_get_tracking_store()`` and
``_get_model_registry_store()``, module functions that build one store per process from
``mlflow server``'s environment variables. The door replaces those two functions, once,
with ones that answer the stores of the backend bound to the current call (a ContextVar),
so that MLflow's handlers and our services use the very same store objects, on SQLite,
PostgreSQL or an upstream MLflow server alike. Outside a door call they fail closed.

This touches MLflow's internal API, here and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from mlflow import MlflowClient

_bound: ContextVar[MlflowClient | None] = ContextVar("matih_mlflow_door_client", default=None)
_install_lock = threading.Lock()
_installed = False


def _client() -> MlflowClient:
    client = _bound.get()
    if client is None:
        raise RuntimeError("MLflow's server handlers were called outside a door call.")
    return client


def _tracking_store(*_: Any, **__: Any) -> Any:
    return _client()._tracking_client.store


def _registry_store(*_: Any, **__: Any) -> Any:
    return _client()._get_registry_client().store


def install() -> None:
    """Point MLflow's handler module at the bound stores (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        import mlflow.server.handlers as handlers

        handlers._get_tracking_store = _tracking_store
        handlers._get_model_registry_store = _registry_store
        _installed = True


@contextmanager
def bound(client: MlflowClient) -> Iterator[None]:
    """Serve MLflow's handlers from ``client``'s stores for the block."""
    token = _bound.set(client)
    try:
        yield
    finally:
        _bound.reset(token)
