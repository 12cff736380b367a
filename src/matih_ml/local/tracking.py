"""Experiments and runs, in process (``ExperimentsContract``, ``RunsContract``).

The REST routes of ``/api/v1/experiments`` and ``/api/v1/runs`` call these methods with
the request's principal; what stays in a route is HTTP: splitting a query's comma lists,
reading a request body (gzip, rows or columns for ``metrics:batch``), naming a download.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from mlflow.entities import Experiment, Run

from matih_ml import urls
from matih_ml.auth.principal import Permission
from matih_ml.contracts.checks import as_model
from matih_ml.contracts.names import RunStatusName
from matih_ml.contracts.protocols import (
    ArtifactList,
    ComparisonRows,
    ExperimentsContract,
    ParamValue,
    RunsContract,
)
from matih_ml.contracts.schemas import (
    ArtifactRead,
    BucketRead,
    ComparisonRow,
    DatasetIn,
    DatasetRead,
    DownsampledRead,
    ExperimentRead,
    LineageRead,
    LineageRun,
    LineageVersion,
    LogBatchResult,
    MetricIn,
    MetricPointRead,
    Page,
    ProductionSpell,
    RunCreate,
    RunInputsRead,
    RunRead,
)
from matih_ml.contracts.walk import ExperimentsWalk, RunsWalk
from matih_ml.local._base import Door, implements
from matih_ml.registry.lineage import LineageService
from matih_ml.tracking.inputs import DatasetRef, RunInputs
from matih_ml.tracking.runs import MetricPoint

if TYPE_CHECKING:
    from matih_ml.services import Services

__all__ = ["LocalExperiments", "LocalRuns", "experiment_read", "run_read"]


def experiment_read(e: Experiment) -> ExperimentRead:
    """An experiment as the API shows it.

    Its artifact location (a server path or bucket URI) is not shown: the body holds the
    API path of its runs instead (:mod:`matih_ml.urls`).
    """
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
    """A run as the API shows it: its artifact URI is the API path that serves them."""
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


def _point(m: MetricIn | Mapping[str, Any]) -> MetricPoint:
    # A MetricIn was checked when it was made (the route's body is a list of them): only
    # a mapping is read here, so a batch from the route costs what it did before.
    point: MetricIn = m if isinstance(m, MetricIn) else as_model(MetricIn, m)
    return MetricPoint(point.key, point.value, point.step, point.timestamp)


@overload
def _column(values: Sequence[Any]) -> Sequence[Any]: ...
@overload
def _column(values: None) -> None: ...
def _column(values: Sequence[Any] | None) -> Sequence[Any] | None:
    """A column as the service reads it: a list or tuple as it is (JSON's, from the
    route: nothing copied on the hot path); anything else (a numpy array, a pandas
    series, a range) as a list of plain Python values, as the HTTP client sends it."""
    if values is None or isinstance(values, list | tuple):
        return values
    tolist = getattr(values, "tolist", None)
    return tolist() if callable(tolist) else list(values)


def _point_read(key: str, p: tuple[int, float, int] | None) -> MetricPointRead | None:
    return None if p is None else MetricPointRead(key=key, step=p[0], value=p[1], timestamp=p[2])


@implements(ExperimentsContract)
class LocalExperiments(ExperimentsWalk, Door):
    """The tenant's experiments, their runs, and run comparison."""

    def list(
        self, *, page_token: str | None = None, max_results: int = 100
    ) -> Page[ExperimentRead]:
        tenant = self._need(Permission.READ)
        page = self._s.runs.list_experiments(tenant, max_results, page_token)
        return Page(
            items=[experiment_read(e) for e in page.items], next_page_token=page.next_page_token
        )

    def get(self, experiment_id: str) -> ExperimentRead:
        tenant = self._need(Permission.READ)
        return experiment_read(self._s.runs.get_experiment(tenant, experiment_id))

    def list_runs(
        self, experiment_id: str, *, page_token: str | None = None, max_results: int = 100
    ) -> Page[RunRead]:
        tenant = self._need(Permission.READ)
        page = self._s.runs.list_runs(tenant, experiment_id, max_results, page_token)
        return Page(items=[run_read(r) for r in page.items], next_page_token=page.next_page_token)

    def compare(
        self,
        run_ids: Sequence[str],
        *,
        metrics: Sequence[str] = (),
        only_differences: bool = False,
    ) -> ComparisonRows:
        tenant = self._need(Permission.READ)
        rows = self._s.registry.compare_runs(
            tenant, list(run_ids), list(metrics), only_differences=only_differences
        )
        return [ComparisonRow(**r) for r in rows]


@implements(RunsContract)
class LocalRuns(RunsWalk, Door):
    """The tenant's runs: create, log, end, read, metric history and artifacts."""

    def create(
        self,
        experiment_name: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        job_id: str = "",
    ) -> RunRead:
        tenant = self._need(Permission.WRITE)
        # The route's body type holds limits the service does not repeat (job_id's length).
        body = as_model(
            RunCreate,
            {
                "experiment_name": experiment_name,
                "run_name": run_name,
                "tags": dict(tags) if tags else {},
                "job_id": job_id,
            },
        )
        run = self._s.runs.create_run(
            tenant,
            body.experiment_name,
            run_name=body.run_name,
            tags=body.tags,
            user_id=self._who.subject,
            job_id=body.job_id,
        )
        return run_read(run)

    def get(self, run_id: str) -> RunRead:
        tenant = self._need(Permission.READ)
        return run_read(self._s.runs.get_run(tenant, run_id))

    def end(self, run_id: str, status: RunStatusName = "FINISHED") -> RunRead:
        tenant = self._need(Permission.WRITE)
        return run_read(self._s.runs.end_run(tenant, run_id, status))

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[MetricIn | Mapping[str, Any]] = (),
        params: Mapping[str, ParamValue] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LogBatchResult:
        tenant = self._need(Permission.WRITE)
        points = [_point(m) for m in metrics]
        n = self._s.runs.log_batch(tenant, run_id, points, params, tags)
        return LogBatchResult(metrics_written=n)

    def log_metrics(
        self,
        run_id: str,
        keys: Sequence[str],
        values: Sequence[float],
        *,
        steps: Sequence[int] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> LogBatchResult:
        tenant = self._need(Permission.WRITE)
        # The service checks every point (one pass, in its own fast loop); the columns
        # reach it as they came unless they are not lists already.
        n = self._s.runs.ingest_metrics(
            tenant, run_id, _column(keys), _column(values), _column(steps), _column(timestamps)
        )
        return LogBatchResult(metrics_written=n)

    def metric_history(
        self,
        run_id: str,
        key: str,
        *,
        page_token: str | None = None,
        max_results: int = 1000,
    ) -> Page[MetricPointRead]:
        tenant = self._need(Permission.READ)
        page = self._s.runs.metric_history(tenant, run_id, key, max_results, page_token)
        return Page(
            items=[
                MetricPointRead(key=m.key, value=m.value, step=m.step, timestamp=m.timestamp)
                for m in page.items
            ],
            next_page_token=page.next_page_token,
        )

    def downsampled_history(self, run_id: str, key: str, max_points: int) -> DownsampledRead:
        tenant = self._need(Permission.READ)
        d = self._s.runs.downsampled_history(tenant, run_id, key, max_points)
        return DownsampledRead(
            key=d.key,
            total=d.total,
            buckets=[BucketRead(**b.__dict__) for b in d.buckets],
            first=_point_read(key, d.first),
            last=_point_read(key, d.last),
        )

    def list_artifacts(self, run_id: str, path: str | None = None) -> ArtifactList:
        tenant = self._need(Permission.READ)
        files = self._s.runs.list_artifacts(tenant, run_id, path)
        return [ArtifactRead(path=f.path, is_dir=f.is_dir, file_size=f.file_size) for f in files]

    def upload_artifact(self, run_id: str, path: str, data: bytes) -> ArtifactRead:
        tenant = self._need(Permission.WRITE)
        rel = self._s.runs.upload_artifact(tenant, run_id, path, data)
        return ArtifactRead(path=rel, is_dir=False, file_size=len(data))

    def read_artifact(self, run_id: str, path: str) -> bytes:
        tenant = self._need(Permission.READ)
        with tempfile.TemporaryDirectory() as tmp:
            return self._s.runs.download_artifact(tenant, run_id, path, Path(tmp)).read_bytes()

    def log_inputs(
        self, run_id: str, datasets: Sequence[DatasetIn | Mapping[str, Any]]
    ) -> RunInputsRead:
        tenant = self._need(Permission.WRITE)
        # The body's limits (lengths, source_type's pattern) hold in process too.
        items = [
            as_model(DatasetIn, d if isinstance(d, Mapping) else d.model_dump()) for d in datasets
        ]
        refs = [DatasetRef(d.name, d.digest, d.uri, d.source_type) for d in items]
        recorded = _inputs(self._s).record(tenant, run_id, refs)
        return RunInputsRead(run_id=run_id, datasets=[_dataset_read(d) for d in recorded])

    def lineage(self, dataset: str) -> LineageRead:
        tenant = self._need(Permission.READ)
        found = LineageService(self._s.backend, self._s.tenants, self._s.db, _inputs(self._s))
        answer = found.lineage(tenant, dataset)
        return LineageRead(
            dataset=answer.dataset,
            matched_by=answer.matched_by,
            runs=[
                LineageRun(
                    run_id=r.run_id,
                    run_name=r.run_name,
                    experiment_id=r.experiment_id,
                    datasets=[_dataset_read(d) for d in r.datasets],
                    versions=[
                        LineageVersion(
                            model_id=v.model_id,
                            version=v.version,
                            stage=v.stage,
                            production=[
                                ProductionSpell(since=p.since, until=p.until) for p in v.production
                            ],
                        )
                        for v in r.versions
                    ],
                )
                for r in answer.runs
            ],
        )


def _inputs(services: Services) -> RunInputs:
    # Stateless over the services' own stores (no I/O to build): made per call rather
    # than added to the composition root while other work edits it.
    return RunInputs(services.backend, services.tenants, services.db)


def _dataset_read(d: DatasetRef) -> DatasetRead:
    return DatasetRead(name=d.name, digest=d.digest, uri=d.uri, source_type=d.source_type)
