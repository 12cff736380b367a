"""Experiments within the current tenant's scope."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Experiment, ViewType

from matih_ml.errors import ConflictError, NotFoundError
from matih_ml.mlflow_errors import translated


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """Return the id of the experiment ``name`` in the bound tenant, creating it if needed.

    Safe under concurrency: when two callers race to create it, the loser reads
    the winner's experiment.
    """
    with translated(f"experiment {name!r}"):
        existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.lifecycle_stage == "deleted":
            raise ConflictError(
                f"Experiment {name!r} is deleted; restore it or choose another name.",
                details={"experiment_name": name},
            )
        return existing.experiment_id
    try:
        with translated(f"experiment {name!r}"):
            return client.create_experiment(name)
    except ConflictError:
        with translated(f"experiment {name!r}"):
            raced = client.get_experiment_by_name(name)
        if raced is None:
            raise
        return raced.experiment_id


def all_experiment_ids(client: MlflowClient) -> list[str]:
    """Return the ids of every experiment of the bound tenant, deleted ones included."""
    ids: list[str] = []
    token: str | None = None
    with translated():
        while True:
            page = client.search_experiments(
                view_type=ViewType.ALL, max_results=1000, page_token=token
            )
            ids.extend(e.experiment_id for e in page)
            token = page.token
            if not token:
                return ids


def get_experiment(client: MlflowClient, experiment_id: str) -> Experiment:
    """Return one experiment of the bound tenant.

    Raises:
        NotFoundError: If it is not there (or belongs to another tenant).
    """
    if not experiment_id.isdigit():
        raise NotFoundError(f"Experiment {experiment_id!r} not found.")
    with translated(f"experiment {experiment_id!r}"):
        return client.get_experiment(experiment_id)
