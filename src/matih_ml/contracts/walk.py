"""Helpers built on the contracts' methods, shared by every implementation of them.

The HTTP client's sub-clients and the in-process doors (``matih_ml.local``) both inherit
these, so ``ml.models.all()`` or ``ml.jobs.follow(job)`` behaves the same whichever door
``ml`` is. Each helper calls only its contract's own methods.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from matih_ml.contracts.names import JOB_DONE, FrameworkName, JobStatusName, StageName
from matih_ml.contracts.protocols import (
    EventsContract,
    ExperimentsContract,
    RegistryContract,
    RunsContract,
)
from matih_ml.contracts.schemas import (
    ExperimentRead,
    JobRead,
    LogLineRead,
    LogPage,
    MetricPointRead,
    ModelRead,
    Page,
    RunRead,
)
from matih_ml.errors import ValidationError


class ModelsWalk:
    """``all``: every model, page after page; ``download``: a version's files, walked."""

    def all(
        self: RegistryContract,
        *,
        stage: StageName | None = None,
        framework: FrameworkName | None = None,
        q: str | None = None,
        tag: str | None = None,
    ) -> Iterator[ModelRead]:
        """Every model that matches, page after page (the filters are ``list``'s)."""
        token: str | None = None
        while True:
            page = self.list(
                stage=stage, framework=framework, q=q, tag=tag, page_token=token, max_results=1000
            )
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def download(
        self: RegistryContract,
        model_id: str,
        version: str | int,
        dest: str | Path,
        *,
        path: str | None = None,
    ) -> Path:
        """A version's files (or the folder ``path`` of them) written under ``dest``.

        Returns:
            ``dest``.

        Raises:
            ValidationError: The listing names a path outside ``dest`` (nothing of it is
                written): a listing is the other side's word, the folder is the caller's.
        """
        root = Path(dest)
        inside = root.resolve()
        pending = [path]
        while pending:
            for entry in self.list_files(model_id, version, pending.pop()):
                if entry.is_dir:
                    pending.append(entry.path)
                    continue
                target = (root / entry.path).resolve()
                if Path(entry.path).is_absolute() or not target.is_relative_to(inside):
                    raise ValidationError(
                        f"The listing named {entry.path!r}, which is outside {root}.",
                        details={"path": entry.path},
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.read_file(model_id, version, entry.path))
        return root


class ExperimentsWalk:
    """``all`` and ``all_runs``: experiments and their runs, page after page."""

    def all(self: ExperimentsContract) -> Iterator[ExperimentRead]:
        """Every experiment of the tenant, page after page."""
        token: str | None = None
        while True:
            page = self.list(page_token=token, max_results=1000)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def all_runs(self: ExperimentsContract, experiment_id: str) -> Iterator[RunRead]:
        """Every run of an experiment, newest first, page after page."""
        token: str | None = None
        while True:
            page = self.list_runs(experiment_id, page_token=token, max_results=1000)
            yield from page.items
            token = page.next_page_token
            if not token:
                return


class RunsWalk:
    """``all_points``: a metric's whole history, page after page."""

    def all_points(self: RunsContract, run_id: str, key: str) -> Iterator[MetricPointRead]:
        """Every point of a metric, by step, page after page."""
        token: str | None = None
        while True:
            page = self.metric_history(run_id, key, page_token=token, max_results=1000)
            yield from page.items
            token = page.next_page_token
            if not token:
                return


class EventsWalk:
    """``all``: the feed up to now."""

    def all(
        self: EventsContract, *, after: int = 0, types: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every event after ``after`` up to now, oldest first (then the iterator ends;
        call again with the last ``sequence`` to go on)."""
        while True:
            page = self.feed(after=after, types=types, limit=1000)
            yield from page.items
            if not page.items:
                return
            after = page.cursor


J = TypeVar("J", bound=JobRead)


class _JobsDoor(Protocol[J]):
    """What the job helpers call: ``JobsContract`` and ``BatchJobsContract`` alike, with
    ``J`` their job's wire type (``JobRead``, ``BatchJobRead``)."""

    def list(
        self,
        *,
        status: JobStatusName | None = None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> Page[J]: ...

    def get(self, job_id: str) -> J: ...

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage: ...


class JobsWalk:
    """``all``, ``wait`` and ``follow``: jobs page after page, and one job to its end."""

    def all(self: _JobsDoor[J], *, status: JobStatusName | None = None) -> Iterator[J]:
        """Every job of the tenant (with ``status``), newest first, page after page."""
        token: str | None = None
        while True:
            page = self.list(status=status, limit=500, page_token=token)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def wait(
        self: _JobsDoor[J], job_id: str, *, timeout: float | None = None, poll: float = 1.0
    ) -> J:
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

    def follow(
        self: _JobsDoor[J], job_id: str, *, after: int = 0, poll: float = 1.0
    ) -> Iterator[LogLineRead]:
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


class BatchJobsWalk(JobsWalk):
    """The same helpers for batch-scoring jobs (``BatchJobsContract``): ``wait`` answers a
    ``BatchJobRead``, whose ``progress`` says how far a running job has come."""
