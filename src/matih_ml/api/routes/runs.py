"""Runs: create, log, end, read, metric history and artifacts."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.convert import run_read
from matih_ml.api.deps import Reader, ServicesDep, Writer
from matih_ml.api.downloads import attachment
from matih_ml.api.params import ArtifactPath, MaxResults, MetricKey, PageToken, RunId
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import (
    ArtifactRead,
    BucketRead,
    DownsampledRead,
    LogBatch,
    LogBatchResult,
    MetricPointRead,
    Page,
    RunCreate,
    RunEnd,
    RunRead,
)
from matih_ml.tracking.runs import MetricPoint

router = APIRouter(
    prefix="/api/v1/runs", tags=["runs"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.post("", status_code=201, response_model=RunRead)
def create_run(body: RunCreate, services: ServicesDep, who: Writer) -> RunRead:
    """Start a run in an experiment (created on first use)."""
    run = services.runs.create_run(
        who.tenant_id,
        body.experiment_name,
        run_name=body.run_name,
        tags=body.tags,
        user_id=who.subject,
        job_id=body.job_id,
    )
    return run_read(run)


@router.get("/{run_id}", response_model=RunRead)
def get_run(run_id: RunId, services: ServicesDep, who: Reader) -> RunRead:
    """Get one run."""
    return run_read(services.runs.get_run(who.tenant_id, run_id))


@router.post("/{run_id}/log-batch", response_model=LogBatchResult)
def log_batch(run_id: RunId, body: LogBatch, services: ServicesDep, who: Writer) -> LogBatchResult:
    """Log metrics, params and tags in one call; a bad item writes nothing."""
    points = [MetricPoint(m.key, m.value, m.step, m.timestamp) for m in body.metrics]
    n = services.runs.log_batch(who.tenant_id, run_id, points, body.params, body.tags)
    return LogBatchResult(metrics_written=n)


@router.post("/{run_id}/end", response_model=RunRead)
def end_run(run_id: RunId, body: RunEnd, services: ServicesDep, who: Writer) -> RunRead:
    """End a run as FINISHED, FAILED or KILLED."""
    return run_read(services.runs.end_run(who.tenant_id, run_id, body.status))


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
    if max_points is not None:
        d = services.runs.downsampled_history(who.tenant_id, run_id, key, max_points)

        def point(p: tuple[int, float, int] | None) -> MetricPointRead | None:
            return (
                None
                if p is None
                else MetricPointRead(key=key, step=p[0], value=p[1], timestamp=p[2])
            )

        return DownsampledRead(
            key=d.key,
            total=d.total,
            buckets=[BucketRead(**b.__dict__) for b in d.buckets],
            first=point(d.first),
            last=point(d.last),
        )
    page = services.runs.metric_history(who.tenant_id, run_id, key, max_results, page_token)
    return Page(
        items=[
            MetricPointRead(key=m.key, value=m.value, step=m.step, timestamp=m.timestamp)
            for m in page.items
        ],
        next_page_token=page.next_page_token,
    )


@router.get("/{run_id}/artifacts", response_model=list[ArtifactRead])
def list_artifacts(
    run_id: RunId,
    services: ServicesDep,
    who: Reader,
    path: Annotated[str | None, Query(max_length=1024)] = None,
) -> list[ArtifactRead]:
    """List the run's artifacts at ``path``."""
    files = services.runs.list_artifacts(who.tenant_id, run_id, path)
    return [ArtifactRead(path=f.path, is_dir=f.is_dir, file_size=f.file_size) for f in files]


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
    rel = await run_in_threadpool(services.runs.upload_artifact, who.tenant_id, run_id, path, data)
    return ArtifactRead(path=rel, is_dir=False, file_size=len(data))


@router.get(
    "/{run_id}/artifacts/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    run_id: RunId, path: ArtifactPath, services: ServicesDep, who: Reader
) -> Response:
    """Download one artifact file."""
    with tempfile.TemporaryDirectory() as tmp:
        local = services.runs.download_artifact(who.tenant_id, run_id, path, Path(tmp))
        data = local.read_bytes()
    return attachment(data, local.name)
