"""Batch-scoring jobs: submit, read, list, cancel, and follow their logs.

Each route calls the in-process door (``LocalClient(...).batch``) through the thread pool,
as the training jobs' routes do: the permission, the tenant and the answer's shape are
the door's, whichever way a caller comes in.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep, Writer
from matih_ml.api.routes._common import ERRORS
from matih_ml.batch_spec import BatchSpec
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.schemas import BatchJobRead, ErrorBody, LogPage, Page
from matih_ml.local import LocalClient
from matih_ml.training.jobs import JOB_ID_PATTERN

router = APIRouter(
    route_class=JsonBodyRoute,
    prefix="/api/v1/batch-jobs",
    tags=["batch"],
    responses={
        **ERRORS,
        429: {"model": ErrorBody, "description": "The tenant's limit of concurrent jobs"},
    },
)

JobId = Annotated[str, Path(min_length=20, max_length=20, pattern=JOB_ID_PATTERN)]
_SPEC_REF = "#/components/schemas/BatchJobSpec"


def openapi_schemas() -> dict[str, Any]:
    """The job body's schema and its parts, for the OpenAPI document's components."""
    schema = BatchSpec.model_json_schema(ref_template="#/components/schemas/BatchJob{model}")
    parts = schema.pop("$defs", {})
    return {"BatchJobSpec": schema, **{f"BatchJob{k}": v for k, v in parts.items()}}


@router.post(
    "",
    status_code=201,
    response_model=BatchJobRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _SPEC_REF}}},
        }
    },
)
async def submit_batch_job(
    services: ServicesDep, who: Writer, body: Annotated[Any, Body(include_in_schema=False)]
) -> BatchJobRead:
    """Queue a batch-scoring job: a model (by stage, alias or version) over a table under
    the tenant's data root, into parquet. A bad field is a 422 naming it
    (``details.field``); a path outside the tenant's root or ``s3://`` prefix is a 422
    naming the path's field; a model the tenant does not have is a 404. A tenant with
    ``MATIH_TRAINING_MAX_JOBS`` jobs queued or running gets a 429."""
    return await run_in_threadpool(LocalClient(services, who).batch.submit, body)


@router.get("", response_model=Page[BatchJobRead])
async def list_batch_jobs(
    services: ServicesDep,
    who: Reader,
    status: JobStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    page_token: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$")] = None,
) -> Page[BatchJobRead]:
    """The tenant's batch jobs, newest first."""
    jobs = LocalClient(services, who).batch
    return await run_in_threadpool(jobs.list, status=status, limit=limit, page_token=page_token)


@router.get("/{job_id}", response_model=BatchJobRead)
async def get_batch_job(job_id: JobId, services: ServicesDep, who: Reader) -> BatchJobRead:
    """One batch job: its status, progress (rows scored of total), the version it scores
    with, and once finished its outcome, reason and result (rows, output, columns)."""
    return await run_in_threadpool(LocalClient(services, who).batch.get, job_id)


@router.post("/{job_id}/cancel", response_model=BatchJobRead)
async def cancel_batch_job(job_id: JobId, services: ServicesDep, who: Writer) -> BatchJobRead:
    """Cancel a queued job, or ask a running one to stop: it writes nothing at its output
    path. A job that has finished is a 409."""
    return await run_in_threadpool(LocalClient(services, who).batch.cancel, job_id)


@router.get("/{job_id}/logs", response_model=LogPage)
async def batch_job_logs(
    job_id: JobId,
    services: ServicesDep,
    who: Reader,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPage:
    """The job's log lines after ``after`` (pass back ``next_after`` to follow)."""
    jobs = LocalClient(services, who).batch
    return await run_in_threadpool(jobs.logs, job_id, after=after, limit=limit)
