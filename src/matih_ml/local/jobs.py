"""Training jobs, in process (``JobsContract``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from matih_ml.auth.principal import Permission
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.protocols import JobsContract
from matih_ml.contracts.schemas import JobRead, LogPage, Page
from matih_ml.contracts.walk import JobsWalk
from matih_ml.job_spec import JobSpec
from matih_ml.local._base import Door, implements
from matih_ml.local._job_kinds import job_page, log_page
from matih_ml.training.jobs import Job

# Every call names its kind: a batch job's id here is not found (the service's filter).
_KIND = "training"


def _read(job: Job) -> JobRead:
    fields = {k: v for k, v in job.__dict__.items() if k != "tenant_id"}
    return JobRead(**fields)


@implements(JobsContract)
class LocalJobs(JobsWalk, Door):
    """Training jobs: submit, read, list, cancel, and their logs.

    Jobs only queue here; an executor (``matih-ml serve`` or ``jobs work``) runs them.
    """

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> JobRead:
        tenant = self._need(Permission.WRITE)
        # A spec object goes as the client sends it, so that the service validates it
        # (matih_ml.job_spec.validate_job, with the operator's allowed entry points)
        # exactly as it validates a request's body.
        body = (
            spec.model_dump(mode="json", exclude_unset=True)
            if isinstance(spec, BaseModel)
            else spec
        )
        return _read(self._s.jobs.submit(tenant, body, actor=self._who.subject))

    def list(
        self,
        *,
        status: JobStatusName | None = None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> Page[JobRead]:
        tenant = self._need(Permission.READ)
        return job_page(
            self._s, tenant, _KIND, _read, status=status, limit=limit, page_token=page_token
        )

    def get(self, job_id: str) -> JobRead:
        tenant = self._need(Permission.READ)
        return _read(self._s.jobs.get(tenant, job_id, kind=_KIND))

    def cancel(self, job_id: str) -> JobRead:
        tenant = self._need(Permission.WRITE)
        return _read(self._s.jobs.cancel(tenant, job_id, actor=self._who.subject, kind=_KIND))

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        tenant = self._need(Permission.READ)
        return log_page(self._s, tenant, _KIND, job_id, after=after, limit=limit)
