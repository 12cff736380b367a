"""``client.batch``: batch-scoring jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from matih_ml.batch_spec import BatchSpec
from matih_ml.client._base import API, SubClient, implements, query, seg
from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.protocols import BatchJobsContract
from matih_ml.contracts.schemas import BatchJobRead, LogPage, Page
from matih_ml.contracts.walk import BatchJobsWalk

_JOBS = f"{API}/batch-jobs"


@implements(BatchJobsContract)
class BatchJobsClient(BatchJobsWalk, SubClient):
    """Batch-scoring jobs: submit, read, list, cancel, and their logs."""

    def submit(self, spec: BatchSpec | Mapping[str, Any]) -> BatchJobRead:
        # A mapping goes as it is: the server's check names a bad field (details.field).
        sent = (
            spec.model_dump(mode="json", exclude_unset=True)
            if isinstance(spec, BaseModel)
            else dict(spec)
        )
        # Not repeated after a lost answer: a second job would be queued.
        return self._t.call(BatchJobRead, "POST", _JOBS, json=sent)

    def list(
        self,
        *,
        status: JobStatusName | None = None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> Page[BatchJobRead]:
        params = query(status=status, limit=limit, page_token=page_token)
        return self._t.call(Page[BatchJobRead], "GET", _JOBS, params=params)

    def get(self, job_id: str) -> BatchJobRead:
        return self._t.call(BatchJobRead, "GET", f"{_JOBS}/{seg(job_id)}")

    def cancel(self, job_id: str) -> BatchJobRead:
        return self._t.call(BatchJobRead, "POST", f"{_JOBS}/{seg(job_id)}/cancel")

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        params = {"after": after, "limit": limit}
        return self._t.call(LogPage, "GET", f"{_JOBS}/{seg(job_id)}/logs", params=params)
