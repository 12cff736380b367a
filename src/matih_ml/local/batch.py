"""Batch-scoring jobs, in process (``BatchJobsContract``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from matih_ml.auth.principal import Permission
from matih_ml.batch_spec import BatchSpec
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.protocols import BatchJobsContract
from matih_ml.contracts.schemas import BatchJobRead, LogPage, Page
from matih_ml.contracts.walk import BatchJobsWalk
from matih_ml.local._base import Door, implements
from matih_ml.local._job_kinds import job_page, log_page
from matih_ml.training.jobs import Job

# Every call names its kind: a training job's id here is not found (the service's filter).
_KIND = "batch"


def _version(job: Job) -> str | None:
    """The version the job resolved when it started: in its progress while it runs, in its
    result once it has finished (None while it is queued)."""
    for record in (job.result, job.progress):
        if record and record.get("version") is not None:
            return str(record["version"])
    return None


def _read(job: Job) -> BatchJobRead:
    fields: dict[str, Any] = {k: v for k, v in job.__dict__.items() if k != "tenant_id"}
    fields.setdefault("version", _version(job))
    return BatchJobRead(**fields)


@implements(BatchJobsContract)
class LocalBatchJobs(BatchJobsWalk, Door):
    """Batch-scoring jobs: submit, read, list, cancel, and their logs.

    Jobs only queue here; an executor (``matih-ml serve`` or ``jobs work``) runs them, the
    same executor and queue as training jobs.
    """

    def submit(self, spec: BatchSpec | Mapping[str, Any]) -> BatchJobRead:
        tenant = self._need(Permission.WRITE)
        # A spec object goes as the client sends it, so that the service validates it
        # (matih_ml.batch_spec.validate_batch) exactly as it validates a request's body.
        body = (
            spec.model_dump(mode="json", exclude_unset=True)
            if isinstance(spec, BaseModel)
            else spec
        )
        return _read(self._s.jobs.submit_batch(tenant, body, actor=self._who.subject))

    def list(
        self,
        *,
        status: JobStatusName | None = None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> Page[BatchJobRead]:
        tenant = self._need(Permission.READ)
        return job_page(
            self._s, tenant, _KIND, _read, status=status, limit=limit, page_token=page_token
        )

    def get(self, job_id: str) -> BatchJobRead:
        tenant = self._need(Permission.READ)
        return _read(self._s.jobs.get(tenant, job_id, kind=_KIND))

    def cancel(self, job_id: str) -> BatchJobRead:
        tenant = self._need(Permission.WRITE)
        return _read(self._s.jobs.cancel(tenant, job_id, actor=self._who.subject, kind=_KIND))

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        tenant = self._need(Permission.READ)
        return log_page(self._s, tenant, _KIND, job_id, after=after, limit=limit)
