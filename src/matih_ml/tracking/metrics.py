"""Writing metrics: validated first, then sent in as few batches as MLflow allows."""

from __future__ import annotations

import time
from collections.abc import Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric

from matih_ml import validation
from matih_ml.mlflow_errors import translated

# MLflow's log_batch takes at most 1,000 metrics per call.
_BATCH = 1000


def log_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, object],
    step: int | None = None,
    timestamp_ms: int | None = None,
) -> None:
    """Validate ``metrics`` and write them to ``run_id`` at ``step``.

    All values are checked before the first write, so one bad value writes nothing.

    Raises:
        ValidationError: For a bad key, a non-number, a non-finite value or a bad step.
        NotFoundError: If the run is not in the bound tenant.
    """
    clean = validation.metrics(metrics)
    at_step = validation.step(step)
    ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    points = [Metric(k, v, ts, at_step) for k, v in clean.items()]
    with translated(f"run {run_id!r}"):
        for i in range(0, len(points), _BATCH):
            client.log_batch(run_id, metrics=points[i : i + _BATCH], synchronous=True)
