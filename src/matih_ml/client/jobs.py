"""``client.jobs``: training jobs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from matih_ml.client._base import API, SubClient, implements, query, seg
from matih_ml.contracts.names import JOB_DONE, JobStatusName
from matih_ml.contracts.protocols import JobsContract
from matih_ml.contracts.schemas import JobRead, LogLineRead, LogPage, Page
from matih_ml.training.spec import JobSpec

_JOBS = f"{API}/training-jobs"


@implements(JobsContract)
class JobsClient(SubClient):
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

    def all(self, *, status: JobStatusName | None = None) -> Iterator[JobRead]:
        """Every job of the tenant (with ``status``), newest first, page after page."""
        token: str | None = None
        while True:
            page = self.list(status=status, limit=500, page_token=token)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def get(self, job_id: str) -> JobRead:
        return self._t.call(JobRead, "GET", f"{_JOBS}/{seg(job_id)}")

    def cancel(self, job_id: str) -> JobRead:
        return self._t.call(JobRead, "POST", f"{_JOBS}/{seg(job_id)}/cancel")

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        params = {"after": after, "limit": limit}
        return self._t.call(LogPage, "GET", f"{_JOBS}/{seg(job_id)}/logs", params=params)

    def wait(self, job_id: str, *, timeout: float | None = None, poll: float = 1.0) -> JobRead:
        """Poll a job until it has finished (succeeded, failed or cancelled).

        Args:
            job_id: The job.
            timeout: Seconds to wait at most (None: as long as it takes).
            poll: Seconds between polls.

        Returns:
            The finished job.

        Raises:
            TimeoutError: It has not finished after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.status in JOB_DONE:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Job {job_id} is still {job.status} after {timeout} s.")
            time.sleep(poll)

    def follow(self, job_id: str, *, after: int = 0, poll: float = 1.0) -> Iterator[LogLineRead]:
        """The job's log lines as they come, until it has finished and all are read."""
        while True:
            done = self.get(job_id).status in JOB_DONE  # asked first: no line is missed
            page = self.logs(job_id, after=after)
            yield from page.items
            after = page.next_after
            if page.items:
                continue
            if done:
                return
            time.sleep(poll)
