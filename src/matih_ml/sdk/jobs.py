"""The SDK's training jobs: the same calls as the API and ``matih-ml jobs``, in Python.

    jobs = TrainingJobs()
    job = await jobs.submit("acme", {...})           # queued; a service executor runs it
    job = await jobs.wait("acme", job.job_id)         # until it ends
    print(job.outcome, job.reason)

``TrainingJobs.sync`` is the synchronous :class:`~matih_ml.training.jobs.JobService`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from matih_ml.config import Settings
from matih_ml.training.jobs import Job, JobService, LogLine

_DONE = ("succeeded", "failed", "cancelled")


class TrainingJobs:
    """Submit, read, list, cancel and follow a tenant's training jobs.

    Args:
        jobs: The job service to use; built from ``settings`` if omitted.
        settings: Used when ``jobs`` is omitted (default: from the environment).
    """

    def __init__(self, jobs: JobService | None = None, *, settings: Settings | None = None) -> None:
        self._jobs = jobs
        self._settings = settings

    @property
    def sync(self) -> JobService:
        """The synchronous job service, for scripts and notebooks."""
        if self._jobs is None:
            from matih_ml.services import build_services

            self._jobs = build_services(self._settings or Settings()).jobs
        return self._jobs

    async def submit(self, tenant_id: str, body: dict[str, Any], *, actor: str = "") -> Job:
        """Validate and queue a job (ValidationError naming the field; LimitExceededError
        when the tenant is at its limit of concurrent jobs)."""
        return await asyncio.to_thread(self.sync.submit, tenant_id, body, actor=actor)

    async def get(self, tenant_id: str, job_id: str) -> Job:
        """One job of the tenant."""
        return await asyncio.to_thread(self.sync.get, tenant_id, job_id)

    async def list(
        self, tenant_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[Job]:
        """The tenant's jobs, newest first."""
        return await asyncio.to_thread(self.sync.list, tenant_id, status=status, limit=limit)

    async def cancel(self, tenant_id: str, job_id: str, *, actor: str = "") -> Job:
        """Cancel a queued job, or ask a running one to stop."""
        return await asyncio.to_thread(self.sync.cancel, tenant_id, job_id, actor=actor)

    async def logs(self, tenant_id: str, job_id: str, *, after: int = 0) -> list[LogLine]:
        """The job's log lines numbered above ``after``."""
        return await asyncio.to_thread(self.sync.logs, tenant_id, job_id, after=after)

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
