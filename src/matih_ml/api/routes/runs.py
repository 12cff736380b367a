"""Runs: create, log, end, read, metric history and artifacts: HTTP over
``LocalClient.runs`` (the body read here, the rules there)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep, Writer
from matih_ml.api.downloads import attachment
from matih_ml.api.params import ArtifactPath, MaxResults, MetricKey, PageToken, RunId
from matih_ml.api.quotas import take_points, upload_slot
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.names import RunStatusName
from matih_ml.contracts.schemas import (
    ArtifactRead,
    DownsampledRead,
    LogBatch,
    LogBatchResult,
    MetricPointRead,
    Page,
    RunCreate,
    RunEnd,
    RunRead,
)
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1/runs", tags=["runs"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.post("", status_code=201, response_model=RunRead)
def create_run(body: RunCreate, services: ServicesDep, who: Writer) -> RunRead:
    """Start a run in an experiment (created on first use)."""
    return LocalClient(services, who).runs.create(
        body.experiment_name, run_name=body.run_name, tags=body.tags, job_id=body.job_id
    )


@router.get("/{run_id}", response_model=RunRead)
def get_run(run_id: RunId, services: ServicesDep, who: Reader) -> RunRead:
    """Get one run."""
    return LocalClient(services, who).runs.get(run_id)


@router.post("/{run_id}/log-batch", response_model=LogBatchResult)
def log_batch(
    run_id: RunId, body: LogBatch, request: Request, services: ServicesDep, who: Writer
) -> LogBatchResult:
    """Log metrics, params and tags in one call; a bad item writes nothing."""
    take_points(request.app, who.tenant_id, len(body.metrics or ()))
    return LocalClient(services, who).runs.log_batch(
        run_id, metrics=body.metrics, params=body.params, tags=body.tags
    )


@router.post("/{run_id}/end", response_model=RunRead)
def end_run(run_id: RunId, body: RunEnd, services: ServicesDep, who: Writer) -> RunRead:
    """End a run as FINISHED, FAILED or KILLED."""
    # RunEnd's pattern holds the three states the contract's name lists.
    return LocalClient(services, who).runs.end(run_id, cast(RunStatusName, body.status))


@router.get(
    "/{run_id}/metrics/{key:path}/history", response_model=Page[MetricPointRead] | DownsampledRead
)
def metric_history(
    run_id: RunId,
    key: MetricKey,
    services: ServicesDep,
    who: Reader,
    page_token: PageToken = None,
    max_results: MaxResults = 1000,
    max_points: Annotated[
        int | None,
        Query(
            ge=1,
            le=10_000,
            description=(
                "Downsample for a chart: at most this many buckets of consecutive steps. "
                "Buckets 64 steps wide or more are built from whole 64- or 4,096-step "
                "blocks, so their widths vary by up to one block"
            ),
        ),
    ] = None,
) -> Page[MetricPointRead] | DownsampledRead:
    """A metric's history, in pages; or, with ``max_points``, downsampled for a chart."""
    runs = LocalClient(services, who).runs
    if max_points is not None:
        return runs.downsampled_history(run_id, key, max_points)
    return runs.metric_history(run_id, key, page_token=page_token, max_results=max_results)


@router.get("/{run_id}/artifacts", response_model=list[ArtifactRead])
def list_artifacts(
    run_id: RunId,
    services: ServicesDep,
    who: Reader,
    path: Annotated[str | None, Query(max_length=1024)] = None,
) -> list[ArtifactRead]:
    """List the run's artifacts at ``path``."""
    return LocalClient(services, who).runs.list_artifacts(run_id, path)


@router.put(
    "/{run_id}/artifacts/{path:path}",
    status_code=201,
    response_model=ArtifactRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_artifact(
    run_id: RunId, path: ArtifactPath, request: Request, services: ServicesDep, who: Writer
) -> ArtifactRead:
    """Upload one file as the artifact ``path`` (the body is the file's bytes)."""
    data = await request.body()

    def store() -> ArtifactRead:
        # One of the tenant's upload slots, and room in its storage (429 / 413).
        with upload_slot(request.app, who.tenant_id, len(data)):
            return LocalClient(services, who).runs.upload_artifact(run_id, path, data)

    return await run_in_threadpool(store)


@router.get(
    "/{run_id}/artifacts/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    run_id: RunId, path: ArtifactPath, services: ServicesDep, who: Reader
) -> Response:
    """Download one artifact file."""
    data = LocalClient(services, who).runs.read_artifact(run_id, path)
    # The file is named as it was stored: the path's last name.
    return attachment(data, PurePosixPath(path).name)
