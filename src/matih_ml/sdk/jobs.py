"""The SDK's training jobs: the same calls as the API and ``matih-ml jobs``, in Python.

    jobs = TrainingJobs()                            # MATIH_URL and MATIH_API_KEY
    job = await jobs.submit("acme", {...})           # queued; the server's executor runs it
    job = await jobs.wait("acme", job.job_id)         # until it ends
    print(job.outcome, job.reason)

Against a server the key names the tenant (``tenant_id`` must be it) and the submitter;
in process (``settings=`` or ``jobs=``), ``TrainingJobs.sync`` is the synchronous
:class:`~matih_ml.training.jobs.JobService`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from matih_ml.config import Settings
from matih_ml.sdk import mode
from matih_ml.training.jobs import Job, JobService, LogLine

if TYPE_CHECKING:
    from matih_ml.contracts.schemas import JobRead

_DONE = ("succeeded", "failed", "cancelled")


def _job(read: JobRead, tenant_id: str) -> Job:
    """A job as the server answered it (its spec and run stay on the server)."""
    return Job(
        job_id=read.job_id,
        tenant_id=tenant_id,
        name=read.name,
        model_name=read.model_name,
        status=read.status,
        outcome=read.outcome,
        reason=read.reason,
        result=read.result,
        cancel_requested=read.cancel_requested,
        created_by=read.created_by,
        created_at=read.created_at,
        started_at=read.started_at,
        finished_at=read.finished_at,
        parent_run_id=None,
        spec={},
    )


class TrainingJobs(mode.ServerOrLocal):
    """Submit, read, list, cancel and follow a tenant's training jobs.

    Args:
        jobs: In process: the job service to use.
        settings: In process: build the job service from these.
        url: The server (else ``MATIH_URL``, else the profile).
        api_key: The key (else ``MATIH_API_KEY``, else the profile).
        profile: A profile of the client's config file.
    """

    def __init__(
        self,
        jobs: JobService | None = None,
        *,
        settings: Settings | None = None,
        url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
    ) -> None:
        self._jobs = jobs
        self._settings = settings
        super().__init__(jobs is not None or settings is not None, url, api_key, profile)

    @property
    def sync(self) -> JobService:
        """The synchronous job service (in process only), for scripts on the server."""
        self._in_process_only("sync")
        if self._jobs is None:
            from matih_ml.services import build_services

            self._jobs = build_services(self._settings or Settings()).jobs
        return self._jobs

    async def submit(self, tenant_id: str, body: dict[str, Any], *, actor: str = "") -> Job:
        """Validate and queue a job (ValidationError naming the field; LimitExceededError
        when the tenant is at its limit of concurrent jobs). Against a server the key is
        the submitter, and ``actor`` is not used."""
        if self._local:
            return await asyncio.to_thread(self.sync.submit, tenant_id, body, actor=actor)
        return await asyncio.to_thread(
            lambda: _job(self._server(tenant_id).client.jobs.submit(body), tenant_id)
        )

    async def get(self, tenant_id: str, job_id: str) -> Job:
        """One job of the tenant."""
        if self._local:
            return await asyncio.to_thread(self.sync.get, tenant_id, job_id)
        return await asyncio.to_thread(
            lambda: _job(self._server(tenant_id).client.jobs.get(job_id), tenant_id)
        )

    async def list(
        self, tenant_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[Job]:
        """The tenant's jobs, newest first."""
        if self._local:
            return await asyncio.to_thread(self.sync.list, tenant_id, status=status, limit=limit)

        def call() -> list[Job]:
            page = self._server(tenant_id).client.jobs.list(status=status, limit=limit)  # type: ignore[arg-type]
            return [_job(j, tenant_id) for j in page.items]

        return await asyncio.to_thread(call)

    async def cancel(self, tenant_id: str, job_id: str, *, actor: str = "") -> Job:
        """Cancel a queued job, or ask a running one to stop."""
        if self._local:
            return await asyncio.to_thread(self.sync.cancel, tenant_id, job_id, actor=actor)
        return await asyncio.to_thread(
            lambda: _job(self._server(tenant_id).client.jobs.cancel(job_id), tenant_id)
        )

    async def logs(self, tenant_id: str, job_id: str, *, after: int = 0) -> list[LogLine]:
        """The job's log lines numbered above ``after``."""
        if self._local:
            return await asyncio.to_thread(self.sync.logs, tenant_id, job_id, after=after)

        def call() -> list[LogLine]:
            page = self._server(tenant_id).client.jobs.logs(job_id, after=after)
            return [LogLine(seq=x.seq, at=x.at, line=x.line) for x in page.items]

        return await asyncio.to_thread(call)

    async def wait(
        self, tenant_id: str, job_id: str, *, timeout: float = 3600, poll_s: float = 0.5
    ) -> Job:
        """Poll until the job ends; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(tenant_id, job_id)
            if job.status in _DONE:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
            await asyncio.sleep(poll_s)
