"""``client.experiments`` and ``client.runs``: tracking."""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from matih_ml.client._base import API, SubClient, body, implements, plain, query, seg, subpath
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
    ComparisonRow,
    DatasetIn,
    DownsampledRead,
    ExperimentRead,
    LineageRead,
    LogBatch,
    LogBatchResult,
    MetricIn,
    MetricPointRead,
    Page,
    RunCreate,
    RunEnd,
    RunInputsIn,
    RunInputsRead,
    RunRead,
)
from matih_ml.contracts.walk import ExperimentsWalk, RunsWalk

_EXPERIMENTS = f"{API}/experiments"
_RUNS = f"{API}/runs"
# A metrics:batch body larger than this is gzipped (the server inflates it).
_GZIP_OVER = 64 * 1024


@implements(ExperimentsContract)
class ExperimentsClient(ExperimentsWalk, SubClient):
    """Experiments, their runs, and run comparison."""

    def list(
        self, *, page_token: str | None = None, max_results: int = 100
    ) -> Page[ExperimentRead]:
        params = query(page_token=page_token, max_results=max_results)
        return self._t.call(Page[ExperimentRead], "GET", _EXPERIMENTS, params=params)

    def get(self, experiment_id: str) -> ExperimentRead:
        return self._t.call(ExperimentRead, "GET", f"{_EXPERIMENTS}/{seg(experiment_id)}")

    def list_runs(
        self, experiment_id: str, *, page_token: str | None = None, max_results: int = 100
    ) -> Page[RunRead]:
        params = query(page_token=page_token, max_results=max_results)
        return self._t.call(
            Page[RunRead], "GET", f"{_EXPERIMENTS}/{seg(experiment_id)}/runs", params=params
        )

    def compare(
        self,
        run_ids: Sequence[str],
        *,
        metrics: Sequence[str] = (),
        only_differences: bool = False,
    ) -> ComparisonRows:
        params = query(
            run_ids=",".join(run_ids),
            metrics=",".join(metrics) or None,
            only_differences="true" if only_differences else None,
        )
        return self._t.call(list[ComparisonRow], "GET", f"{_EXPERIMENTS}/compare", params=params)


@implements(RunsContract)
class RunsClient(RunsWalk, SubClient):
    """Runs: create, log, end, read, metric history and artifacts."""

    def create(
        self,
        experiment_name: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        job_id: str = "",
    ) -> RunRead:
        sent = body(
            RunCreate,
            experiment_name=experiment_name,
            run_name=run_name,
            tags=plain(tags),
            job_id=job_id,
        )
        # Not repeated after a lost answer: a second run would be made.
        return self._t.call(RunRead, "POST", _RUNS, json=sent)

    def get(self, run_id: str) -> RunRead:
        return self._t.call(RunRead, "GET", f"{_RUNS}/{seg(run_id)}")

    def end(self, run_id: str, status: RunStatusName = "FINISHED") -> RunRead:
        sent = body(RunEnd, status=status)
        return self._t.call(RunRead, "POST", f"{_RUNS}/{seg(run_id)}/end", json=sent)

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[MetricIn | Mapping[str, Any]] = (),
        params: Mapping[str, ParamValue] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LogBatchResult:
        points = [m.model_dump() if isinstance(m, BaseModel) else dict(m) for m in metrics]
        sent = body(LogBatch, metrics=points, params=plain(params), tags=plain(tags))
        # No timestamp means the server's now, as null does: left out, the body is smaller.
        for point in sent["metrics"]:
            if point.get("timestamp") is None:
                point.pop("timestamp", None)
        return self._t.call(LogBatchResult, "POST", f"{_RUNS}/{seg(run_id)}/log-batch", json=sent)

    def log_metrics(
        self,
        run_id: str,
        keys: Sequence[str],
        values: Sequence[float],
        *,
        steps: Sequence[int] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> LogBatchResult:
        # Plain floats and ints: numpy arrays and their scalars are welcome here.
        columns: dict[str, Any] = {"keys": list(keys), "values": [float(v) for v in values]}
        if steps is not None:
            columns["steps"] = [int(s) for s in steps]
        if timestamps is not None:
            columns["timestamps"] = [int(t) for t in timestamps]
        raw = json.dumps(columns, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if len(raw) > _GZIP_OVER:
            raw = gzip.compress(raw, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return self._t.call(
            LogBatchResult,
            "POST",
            f"{_RUNS}/{seg(run_id)}/metrics:batch",
            content=raw,
            headers=headers,
        )

    def metric_history(
        self,
        run_id: str,
        key: str,
        *,
        page_token: str | None = None,
        max_results: int = 1000,
    ) -> Page[MetricPointRead]:
        params = query(page_token=page_token, max_results=max_results)
        return self._t.call(Page[MetricPointRead], "GET", _history_path(run_id, key), params=params)

    def downsampled_history(self, run_id: str, key: str, max_points: int) -> DownsampledRead:
        return self._t.call(
            DownsampledRead,
            "GET",
            _history_path(run_id, key),
            params={"max_points": max_points},
        )

    def list_artifacts(self, run_id: str, path: str | None = None) -> ArtifactList:
        return self._t.call(
            list[ArtifactRead], "GET", f"{_RUNS}/{seg(run_id)}/artifacts", params=query(path=path)
        )

    def upload_artifact(self, run_id: str, path: str, data: bytes) -> ArtifactRead:
        return self._t.call(
            ArtifactRead,
            "PUT",
            f"{_RUNS}/{seg(run_id)}/artifacts/{subpath(path)}",
            content=bytes(data),
            headers={"Content-Type": "application/octet-stream"},
        )

    def read_artifact(self, run_id: str, path: str) -> bytes:
        return self._t.request("GET", f"{_RUNS}/{seg(run_id)}/artifacts/{subpath(path)}").content

    def log_inputs(
        self, run_id: str, datasets: Sequence[DatasetIn | Mapping[str, Any]]
    ) -> RunInputsRead:
        items = [d.model_dump() if isinstance(d, BaseModel) else dict(d) for d in datasets]
        sent = body(RunInputsIn, datasets=items)
        return self._t.call(RunInputsRead, "POST", f"{_RUNS}/{seg(run_id)}/inputs", json=sent)

    def lineage(self, dataset: str) -> LineageRead:
        return self._t.call(LineageRead, "GET", f"{API}/lineage", params=query(dataset=dataset))


def _history_path(run_id: str, key: str) -> str:
    return f"{_RUNS}/{seg(run_id)}/metrics/{subpath(key)}/history"
