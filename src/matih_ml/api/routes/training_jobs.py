"""Training jobs: submit, read, list, cancel, and follow their logs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep, Writer
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.schemas import ErrorBody, JobRead, LogLineRead, LogPage, Page
from matih_ml.job_spec import JobSpec
from matih_ml.training.jobs import JOB_ID_PATTERN, Job

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


def _read(job: Job) -> JobRead:
    fields = {k: v for k, v in job.__dict__.items() if k != "tenant_id"}
    return JobRead(**fields)


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
    job = await run_in_threadpool(services.jobs.submit, who.tenant_id, body, actor=who.subject)
    return _read(job)


@router.get("", response_model=Page[JobRead])
async def list_jobs(
    services: ServicesDep,
    who: Reader,
    status: JobStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    page_token: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$")] = None,
) -> Page[JobRead]:
    """The tenant's jobs, newest first."""
    offset = int(page_token or 0)
    jobs = await run_in_threadpool(
        services.jobs.list, who.tenant_id, status=status, limit=limit + 1, offset=offset
    )
    token = str(offset + limit) if len(jobs) > limit else None
    return Page(items=[_read(j) for j in jobs[:limit]], next_page_token=token)


@router.get("/{job_id}", response_model=JobRead)
async def get_job(job_id: JobId, services: ServicesDep, who: Reader) -> JobRead:
    """One job: its status, and once finished its outcome, reason and figures."""
    return _read(await run_in_threadpool(services.jobs.get, who.tenant_id, job_id))


@router.post("/{job_id}/cancel", response_model=JobRead)
async def cancel_job(job_id: JobId, services: ServicesDep, who: Writer) -> JobRead:
    """Cancel a queued job, or ask a running one to stop (its run ends KILLED). A job
    that has finished is a 409."""
    job = await run_in_threadpool(services.jobs.cancel, who.tenant_id, job_id, actor=who.subject)
    return _read(job)


@router.get("/{job_id}/logs", response_model=LogPage)
async def job_logs(
    job_id: JobId,
    services: ServicesDep,
    who: Reader,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPage:
    """The job's log lines after ``after`` (pass back ``next_after`` to follow)."""
    lines = await run_in_threadpool(
        services.jobs.logs, who.tenant_id, job_id, after=after, limit=limit
    )
    items = [LogLineRead(**line.__dict__) for line in lines]
    return LogPage(items=items, next_after=items[-1].seq if items else after)
