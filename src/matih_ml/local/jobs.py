"""Training jobs, in process (``JobsContract``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from matih_ml.auth.principal import Permission
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.protocols import JobsContract
from matih_ml.contracts.schemas import JobRead, LogLineRead, LogPage, Page
from matih_ml.contracts.walk import JobsWalk
from matih_ml.errors import ValidationError
from matih_ml.job_spec import JobSpec
from matih_ml.local._base import Door, implements, within
from matih_ml.training.jobs import Job, LogLine

# A page token is the offset of the page's first job (the route's query pattern).
_TOKEN = re.compile(r"[0-9]{1,9}")
# Every call names its kind: a batch job's id here is not found (the service's filter).
_KIND = "training"


def _read(job: Job) -> JobRead:
    fields = {k: v for k, v in job.__dict__.items() if k != "tenant_id"}
    return JobRead(**fields)


def _page(lines: Iterable[LogLine], after: int) -> LogPage:
    # Not in LocalJobs: in a class with a ``list`` method mypy misreads a ``list[...]``.
    items = [LogLineRead(**line.__dict__) for line in lines]
    return LogPage(items=items, next_after=items[-1].seq if items else after)


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
        within(limit, "limit", 1, 500)
        if page_token is not None and not _TOKEN.fullmatch(page_token):
            raise ValidationError(
                "page_token is not one this service gave.", details={"field": "page_token"}
            )
        offset = int(page_token or 0)
        # One more than asked: whether it comes back says whether a next page exists.
        jobs = self._s.jobs.list(tenant, status=status, limit=limit + 1, offset=offset, kind=_KIND)
        token = str(offset + limit) if len(jobs) > limit else None
        return Page(items=[_read(j) for j in jobs[:limit]], next_page_token=token)

    def get(self, job_id: str) -> JobRead:
        tenant = self._need(Permission.READ)
        return _read(self._s.jobs.get(tenant, job_id, kind=_KIND))

    def cancel(self, job_id: str) -> JobRead:
        tenant = self._need(Permission.WRITE)
        return _read(self._s.jobs.cancel(tenant, job_id, actor=self._who.subject, kind=_KIND))

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        tenant = self._need(Permission.READ)
        within(after, "after", 0, 2**62)
        within(limit, "limit", 1, 5000)
        lines = self._s.jobs.logs(tenant, job_id, after=after, limit=limit, kind=_KIND)
        return _page(lines, after)
