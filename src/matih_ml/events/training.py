"""Starting and ending runs with their training events (for the SDK and the API alike)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run, RunStatus

from matih_ml.events.catalog import EventType
from matih_ml.events.outbox import TAG_EVENT_INTENT, EventLog
from matih_ml.mlflow_errors import translated


def start_run(
    client: MlflowClient,
    events: EventLog,
    tenant_id: str,
    experiment_id: str,
    experiment_name: str,
    *,
    tags: Mapping[str, str],
    run_name: str | None,
    user_id: str | None,
    job_id: str | None,
    start_time: int | None = None,
) -> Run:
    """Create a run in the bound tenant and publish ``MODEL_TRAINING_STARTED``."""
    data = {
        "experiment_id": experiment_id,
        "experiment_name": experiment_name,
        "run_name": run_name,
        "user_id": user_id or None,
        "job_id": job_id or None,
    }
    with events.pending(tenant_id, EventType.MODEL_TRAINING_STARTED, "run/", data) as p:
        with translated(f"experiment {experiment_name!r}"):
            run = client.create_run(
                experiment_id,
                start_time=start_time,
                tags={**tags, TAG_EVENT_INTENT: p.id},
                run_name=run_name,
            )
        p.subject = f"run/{run.info.run_id}"
        p.data["run_id"] = run.info.run_id
        p.data["run_name"] = run.info.run_name
    return run


def end_run(
    client: MlflowClient,
    events: EventLog,
    tenant_id: str,
    run_id: str,
    status: str,
    *,
    job: Mapping[str, Any] | None = None,
) -> Run:
    """End a run of the bound tenant and publish ``MODEL_TRAINING_COMPLETED``.

    Ending a run again with the status it has already publishes nothing.
    """
    with translated(f"Run {run_id!r}"):
        before = client.get_run(run_id)
    data: dict[str, Any] = {"run_id": run_id, "experiment_id": before.info.experiment_id}
    if job:
        data.update(job)
    with events.pending(tenant_id, EventType.MODEL_TRAINING_COMPLETED, f"run/{run_id}", data) as p:
        with translated(f"Run {run_id!r}"):
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.from_string(status)))
            after = client.get_run(run_id)
        if before.info.status == after.info.status:
            p.cancel()
        p.data.update(status=after.info.status, metrics=dict(after.data.metrics))
    return after
