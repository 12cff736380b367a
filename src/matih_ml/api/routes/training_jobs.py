"""Training jobs: submit, read, list, cancel, and follow their logs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep, Writer
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.schemas import ErrorBody, JobRead, LogPage, Page
from matih_ml.job_spec import JobSpec
from matih_ml.local import LocalClient
from matih_ml.training.jobs import JOB_ID_PATTERN

router = APIRouter(
    route_class=JsonBodyRoute,
    prefix="/api/v1/training-jobs",
    tags=["training"],
    responses={
        **ERRORS,
        429: {"model": ErrorBody, "description": "The tenant's limit of concurrent jobs"},
    },
)

JobId = Annotated[str, Path(min_length=20, max_length=20, pattern=JOB_ID_PATTERN)]
_SPEC_REF = "#/components/schemas/TrainingJobSpec"


def openapi_schemas() -> dict[str, Any]:
    """The job body's schema and its parts, for the OpenAPI document's components."""
    schema = JobSpec.model_json_schema(ref_template="#/components/schemas/TrainingJob{model}")
    parts = schema.pop("$defs", {})
    return {"TrainingJobSpec": schema, **{f"TrainingJob{k}": v for k, v in parts.items()}}


@router.post(
    "",
    status_code=201,
    response_model=JobRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _SPEC_REF}}},
        }
    },
)
async def submit_job(
    services: ServicesDep, who: Writer, body: Annotated[Any, Body(include_in_schema=False)]
) -> JobRead:
    """Queue a training job. The body is checked first: a bad field is a 422 naming it
    (``details.field``, with every problem in ``details.problems``). A tenant with
    ``MATIH_TRAINING_MAX_JOBS`` jobs queued or running gets a 429."""
    return await run_in_threadpool(LocalClient(services, who).jobs.submit, body)


@router.get("", response_model=Page[JobRead])
async def list_jobs(
    services: ServicesDep,
    who: Reader,
    status: JobStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    page_token: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$")] = None,
) -> Page[JobRead]:
    """The tenant's jobs, newest first."""
    jobs = LocalClient(services, who).jobs
    return await run_in_threadpool(jobs.list, status=status, limit=limit, page_token=page_token)


@router.get("/{job_id}", response_model=JobRead)
async def get_job(job_id: JobId, services: ServicesDep, who: Reader) -> JobRead:
    """One job: its status, and once finished its outcome, reason and figures."""
    return await run_in_threadpool(LocalClient(services, who).jobs.get, job_id)


@router.post("/{job_id}/cancel", response_model=JobRead)
async def cancel_job(job_id: JobId, services: ServicesDep, who: Writer) -> JobRead:
    """Cancel a queued job, or ask a running one to stop (its run ends KILLED). A job
    that has finished is a 409."""
    return await run_in_threadpool(LocalClient(services, who).jobs.cancel, job_id)


@router.get("/{job_id}/logs", response_model=LogPage)
async def job_logs(
    job_id: JobId,
    services: ServicesDep,
    who: Reader,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPage:
    """The job's log lines after ``after`` (pass back ``next_after`` to follow)."""
    jobs = LocalClient(services, who).jobs
    return await run_in_threadpool(jobs.logs, job_id, after=after, limit=limit)
