"""Runs, experiments and artifacts for the API: each call scoped to one tenant."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Experiment, Metric, Param, Run, RunTag, ViewType

from matih_ml import validation
from matih_ml.backend import MlflowBackend
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.events import training
from matih_ml.events.outbox import EventLog
from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
from matih_ml.mlflow_adapter.downsample import Downsampled, downsample
from matih_ml.mlflow_adapter.stores import metric_history_page
from matih_ml.mlflow_errors import translated
from matih_ml.tenancy import TenantDirectory
from matih_ml.tracking.experiments import get_experiment, get_or_create_experiment
from matih_ml.tracking.tracker import TAG_JOB, TAG_TENANT, TAG_USER

MAX_PAGE = 1000
MAX_BATCH = 10_000
MAX_INGEST = 200_000
MAX_BUCKETS = 10_000
_END_STATES = {"FINISHED", "FAILED", "KILLED"}


@dataclass(frozen=True)
class MetricPoint:
    """One metric value at one step."""

    key: str
    value: float
    step: int = 0
    timestamp: int | None = None


@dataclass(frozen=True)
class Page:
    """A page of results and the token for the next one (None at the end)."""

    items: list[Any]
    next_page_token: str | None


def _page_size(max_results: int) -> int:
    if not 1 <= max_results <= MAX_PAGE:
        raise ValidationError(
            f"max_results must be between 1 and {MAX_PAGE}.", details={"field": "max_results"}
        )
    return max_results


class RunService:
    """Tenant-scoped runs, experiments and artifacts.

    Args:
        backend: The MLflow backend.
        tenants: The tenant directory.
    """

    def __init__(self, backend: MlflowBackend, tenants: TenantDirectory, events: EventLog) -> None:
        self._client = backend.client
        self._tenants = tenants
        self._events = events
        self._writer = BulkMetricWriter(backend.client)

    def list_experiments(
        self, tenant_id: str, max_results: int = 100, page_token: str | None = None
    ) -> Page:
        """One page of the tenant's active experiments."""
        size = _page_size(max_results)
        page_token = validation.page_token(page_token)
        with self._tenants.scope(tenant_id), translated(bad_input=bool(page_token)):
            page = self._client.search_experiments(
                view_type=ViewType.ACTIVE_ONLY,
                max_results=size,
                page_token=page_token or None,
                order_by=["experiment_id ASC"],
            )
        return Page(list(page), page.token or None)

    def get_experiment(self, tenant_id: str, experiment_id: str) -> Experiment:
        """One experiment of the tenant."""
        with self._tenants.scope(tenant_id):
            return get_experiment(self._client, experiment_id)

    def list_runs(
        self,
        tenant_id: str,
        experiment_id: str,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page:
        """One page of an experiment's runs, newest first."""
        size = _page_size(max_results)
        page_token = validation.page_token(page_token)
        with self._tenants.scope(tenant_id):
            get_experiment(self._client, experiment_id)
            with translated(bad_input=bool(page_token)):
                page = self._client.search_runs(
                    [experiment_id],
                    max_results=size,
                    page_token=page_token or None,
                    order_by=["attributes.start_time DESC"],
                )
        return Page(list(page), page.token or None)

    def create_run(
        self,
        tenant_id: str,
        experiment_name: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        user_id: str = "",
        job_id: str = "",
    ) -> Run:
        """Start a run in the tenant's experiment (created on first use)."""
        name = validation.experiment_name(experiment_name)
        clean = validation.tags(tags)
        run_name = validation.run_name(run_name)
        all_tags = {**clean, TAG_TENANT: tenant_id, TAG_USER: user_id, TAG_JOB: job_id}
        with self._tenants.scope(tenant_id, create=True) as tenant:
            experiment_id = get_or_create_experiment(self._client, name)
            return training.start_run(
                self._client,
                self._events,
                tenant,
                experiment_id,
                name,
                tags=all_tags,
                run_name=run_name,
                user_id=user_id,
                job_id=job_id,
            )

    def get_run(self, tenant_id: str, run_id: str) -> Run:
        """One run of the tenant."""
        run_id = validation.run_id(run_id)
        with self._tenants.scope(tenant_id), translated(f"Run {run_id!r}"):
            return self._client.get_run(run_id)

    def log_batch(
        self,
        tenant_id: str,
        run_id: str,
        metrics: Sequence[MetricPoint] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> int:
        """Log metrics, params and tags; all are checked before anything is written.

        Returns:
            How many metric points were written.
        """
        run_id = validation.run_id(run_id)
        if len(metrics) > MAX_BATCH:
            raise ValidationError(
                f"A batch holds at most {MAX_BATCH} metric points; got {len(metrics)}.",
                details={"field": "metrics", "limit": MAX_BATCH},
            )
        now = int(time.time() * 1000)
        points = [
            Metric(
                validation.key(p.key, "metric key"),
                validation.metric_value(p.key, p.value),
                p.timestamp if p.timestamp is not None else now,
                validation.step(p.step),
            )
            for p in metrics
        ]
        clean_params = [Param(k, v) for k, v in validation.params(params).items()]
        clean_tags = [RunTag(k, v) for k, v in validation.tags(tags).items()]
        with self._tenants.scope(tenant_id) as bound:
            self._check_active(bound, run_id)
            if clean_params or clean_tags:
                with translated(f"Run {run_id!r}"):
                    self._client.log_batch(
                        run_id, params=clean_params, tags=clean_tags, synchronous=True
                    )
            self._writer.write(run_id, [(m.key, m.value, m.timestamp, m.step) for m in points])
        return len(points)

    def ingest_metrics(
        self,
        tenant_id: str,
        run_id: str,
        keys: Sequence[Any],
        values: Sequence[Any],
        steps: Sequence[Any] | None = None,
        timestamps: Sequence[Any] | None = None,
    ) -> int:
        """Write many points at once, given as columns; all are checked before any write.

        Args:
            tenant_id: The tenant.
            run_id: The run.
            keys: Each point's metric key.
            values: Each point's value (finite numbers).
            steps: Each point's step (default 0).
            timestamps: Each point's time in ms since the epoch (default now).

        Returns:
            How many points were written.

        Raises:
            ValidationError: For columns of different lengths, too many points, or any
                bad key, value, step or timestamp (naming the first one).
            NotFoundError: If the run is not this tenant's.
        """
        run_id = validation.run_id(run_id)
        points = validation.metric_columns(keys, values, steps, timestamps, limit=MAX_INGEST)
        with self._tenants.scope(tenant_id) as bound:
            self._check_active(bound, run_id)
            self._writer.write(run_id, points)
        return len(points)

    def _check_active(self, tenant_id: str, run_id: str) -> None:
        """As :meth:`_active_run`, in one row when the points go straight into SQL (the
        logging paths run this on every request)."""
        if not self._writer.direct:
            self._active_run(run_id)
            return
        stage = self._writer.lifecycle_stage(tenant_id, run_id)
        if stage is None:
            raise NotFoundError(f"Run {run_id!r} not found.", details={"run_id": run_id})
        if stage != "active":
            raise ValidationError(
                f"Run {run_id!r} is deleted; restore it to log to it.",
                details={"run_id": run_id},
            )

    def _active_run(self, run_id: str) -> Run:
        with translated(f"Run {run_id!r}"):
            run = self._client.get_run(run_id)
        if run.info.lifecycle_stage != "active":
            raise ValidationError(
                f"Run {run_id!r} is deleted; restore it to log to it.",
                details={"run_id": run_id},
            )
        return run

    def end_run(
        self,
        tenant_id: str,
        run_id: str,
        status: str = "FINISHED",
        *,
        job: Mapping[str, Any] | None = None,
    ) -> Run:
        """End a run as FINISHED, FAILED or KILLED.

        ``job`` is a training job's id and outcome, for the job's own run: they go on
        its ``MODEL_TRAINING_COMPLETED`` event.
        """
        run_id = validation.run_id(run_id)
        if status not in _END_STATES:
            raise ValidationError(
                f"status must be one of {sorted(_END_STATES)}.", details={"field": "status"}
            )
        with self._tenants.scope(tenant_id) as tenant:
            return training.end_run(self._client, self._events, tenant, run_id, status, job=job)

    def metric_history(
        self,
        tenant_id: str,
        run_id: str,
        key: str,
        max_results: int = 1000,
        page_token: str | None = None,
    ) -> Page:
        """One page of a metric's history, in step order."""
        run_id = validation.run_id(run_id)
        key = validation.key(key, "metric key")
        size = _page_size(max_results)
        page_token = validation.page_token(page_token)
        with self._tenants.scope(tenant_id), translated(f"Run {run_id!r}"):
            self._client.get_run(run_id)
        with self._tenants.scope(tenant_id), translated(bad_input=bool(page_token)):
            page = metric_history_page(
                self._client, run_id, key, max_results=size, page_token=page_token or None
            )
        return Page(list(page), getattr(page, "token", None) or None)

    def downsampled_history(
        self, tenant_id: str, run_id: str, key: str, max_points: int
    ) -> Downsampled:
        """A metric's history as at most ``max_points`` buckets (min, max, mean), plus
        its first and last points, computed by the database."""
        run_id = validation.run_id(run_id)
        key = validation.key(key, "metric key")
        if not 1 <= max_points <= MAX_BUCKETS:
            raise ValidationError(
                f"max_points must be between 1 and {MAX_BUCKETS}.",
                details={"field": "max_points"},
            )
        with self._tenants.scope(tenant_id):
            with translated(f"Run {run_id!r}"):
                self._client.get_run(run_id)
            return downsample(self._client, run_id, key, max_points)

    def list_artifacts(self, tenant_id: str, run_id: str, path: str | None = None) -> list[Any]:
        """The files and folders at ``path`` in the run's artifacts."""
        run_id = validation.run_id(run_id)
        rel = validation.artifact_path(path)
        with self._tenants.scope(tenant_id), translated(f"Run {run_id!r}"):
            self._client.get_run(run_id)
            return list(self._client.list_artifacts(run_id, rel))

    def upload_artifact(self, tenant_id: str, run_id: str, path: str, data: bytes) -> str:
        """Write ``data`` as the artifact file ``path`` of the run."""
        run_id = validation.run_id(run_id)
        rel = validation.artifact_path(path)
        if not rel:
            raise ValidationError("An artifact path is required.", details={"field": "path"})
        folder, _, filename = rel.rpartition("/")
        with self._tenants.scope(tenant_id), translated(f"Run {run_id!r}"):
            self._client.get_run(run_id)
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / filename
                local.write_bytes(data)
                self._client.log_artifact(run_id, str(local), folder or None)
        return rel

    def download_artifact(self, tenant_id: str, run_id: str, path: str, dst: Path) -> Path:
        """Download the artifact file ``path`` of the run into the folder ``dst``."""
        run_id = validation.run_id(run_id)
        rel = validation.artifact_path(path)
        if not rel:
            raise ValidationError("An artifact path is required.", details={"field": "path"})
        with self._tenants.scope(tenant_id), translated(f"Run {run_id!r}"):
            self._client.get_run(run_id)
            try:
                local = Path(self._client.download_artifacts(run_id, rel, str(dst)))
            except (OSError, ValueError) as exc:
                raise NotFoundError(f"Artifact {rel!r} not found.") from exc
        if local.is_dir():
            raise ValidationError(
                f"Artifact {rel!r} is a folder; list it instead.", details={"field": "path"}
            )
        return local
