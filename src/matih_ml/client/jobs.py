"""``client.jobs``: training jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from matih_ml.client._base import API, SubClient, implements, query, seg
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.protocols import JobsContract
from matih_ml.contracts.schemas import JobRead, LogPage, Page
from matih_ml.contracts.walk import JobsWalk
from matih_ml.job_spec import JobSpec

_JOBS = f"{API}/training-jobs"


@implements(JobsContract)
class JobsClient(JobsWalk, SubClient):
    """Training jobs: submit, read, list, cancel, and their logs."""

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> JobRead:
        # A mapping goes as it is: the server's check names a bad field (details.field).
        sent = (
            spec.model_dump(mode="json", exclude_unset=True)
            if isinstance(spec, BaseModel)
            else dict(spec)
        )
        # Not repeated after a lost answer: a second job would be queued.
        return self._t.call(JobRead, "POST", _JOBS, json=sent)

    def list(
        self,
        *,
        status: JobStatusName | None = None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> Page[JobRead]:
        params = query(status=status, limit=limit, page_token=page_token)
        return self._t.call(Page[JobRead], "GET", _JOBS, params=params)

    def get(self, job_id: str) -> JobRead:
        return self._t.call(JobRead, "GET", f"{_JOBS}/{seg(job_id)}")

    def cancel(self, job_id: str) -> JobRead:
        return self._t.call(JobRead, "POST", f"{_JOBS}/{seg(job_id)}/cancel")

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        params = {"after": after, "limit": limit}
        return self._t.call(LogPage, "GET", f"{_JOBS}/{seg(job_id)}/logs", params=params)
