"""The stores behind an ``MlflowClient``: reached through its private attributes.

``MlflowClient`` has no public way to its tracking store, its store's SQL engine or the
URIs it resolved; these functions are the only places the service reaches for them.
"""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from sqlalchemy import Dialect, Engine

# MLflow's in-process SQL store takes its default artifact root from this variable
# (mlflow.tracking._tracking_service.utils._SERVER_ARTIFACT_ROOT_ENV_VAR).
SERVER_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"


def tracking_store(client: MlflowClient) -> Any:
    """The tracking store the client talks to (SQL, file or REST)."""
    return client._tracking_client.store


def registry_store(client: MlflowClient) -> Any:
    """The model registry store the client talks to."""
    return client._get_registry_client().store


def sql_engine(client: MlflowClient) -> Engine | None:
    """The tracking store's engine, or None for a store that is not SQL."""
    engine = getattr(tracking_store(client), "engine", None)
    return engine if isinstance(engine, Engine) else None


def registry_sql_engine(client: MlflowClient) -> Engine | None:
    """The registry store's engine, or None for a registry store that is not SQL.

    With both stores on one database it is the tracking store's engine (MLflow builds one
    per store): one pool serves a read of models and of their runs.
    """
    engine = getattr(registry_store(client), "engine", None)
    if not isinstance(engine, Engine):
        return None
    tracking = sql_engine(client)
    return tracking if tracking is not None and tracking.url == engine.url else engine


def copies(dialect: Dialect) -> bool:
    """Whether bulk writes use ``COPY``: PostgreSQL through psycopg 3 (``cursor.copy``).
    SQLite, and PostgreSQL through psycopg2, take ``executemany``."""
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def tracking_uri(client: MlflowClient) -> str:
    """The tracking URI the client resolved (with its tuning applied)."""
    return client._tracking_client.tracking_uri


def registry_uri(client: MlflowClient) -> str:
    """The registry URI the client resolved (with its tuning applied); MLflow's default
    is the tracking URI."""
    return client._registry_uri or tracking_uri(client)


def metric_history_page(
    client: MlflowClient, run_id: str, key: str, *, max_results: int, page_token: str | None
) -> Any:
    """One page of a metric's history, in step order, from the store itself.

    ``MlflowClient.get_metric_history`` reads every page; the store's method takes a page
    size and a token. The result is MLflow's ``PagedList`` (``.token`` is the next page's).
    """
    return tracking_store(client).get_metric_history(
        run_id, key, max_results=max_results, page_token=page_token
    )
