"""MLflow entities to response bodies.

Where MLflow holds a server path or bucket URI (an experiment's artifact location, a
run's artifact URI), the body holds the API path that serves those files instead
(:mod:`matih_ml.urls`).
"""

from __future__ import annotations

from mlflow.entities import Experiment, Run

from matih_ml import urls
from matih_ml.contracts.schemas import ExperimentRead, RunRead


def experiment_read(e: Experiment) -> ExperimentRead:
    """An experiment as the API shows it."""
    return ExperimentRead(
        experiment_id=e.experiment_id,
        name=e.name,
        runs_url=urls.experiment_runs(e.experiment_id),
        lifecycle_stage=e.lifecycle_stage,
        tags=dict(e.tags or {}),
        creation_time=e.creation_time,
        last_update_time=e.last_update_time,
    )


def run_read(r: Run) -> RunRead:
    """A run as the API shows it."""
    return RunRead(
        run_id=r.info.run_id,
        run_name=r.info.run_name,
        experiment_id=r.info.experiment_id,
        status=r.info.status,
        start_time=r.info.start_time,
        end_time=r.info.end_time,
        artifact_uri=urls.run_artifacts(r.info.run_id),
        metrics=dict(r.data.metrics),
        params=dict(r.data.params),
        tags=dict(r.data.tags),
    )
