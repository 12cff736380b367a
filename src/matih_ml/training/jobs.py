"""Training jobs as a resource: submit, read, list, cancel, and their logs.

A job is a row in the service database. Submitting validates the body and queues it;
an executor (:mod:`~matih_ml.training.executor`) in any replica claims it, runs it and
records what happened. Everything here is tenant-scoped: another tenant's job is a 404.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from matih_ml.config import Settings
from matih_ml.errors import ConflictError, LimitExceededError, NotFoundError, ValidationError
from matih_ml.job_spec import JobSpec, validate_job
from matih_ml.store import lifecycle_store
from matih_ml.store.db import Database
from matih_ml.store.models import TrainingJobLogRow, TrainingJobRow, TrainingQuotaRow

JOB_ID_PATTERN = r"^job_[a-f0-9]{16}$"
ACTIVE = ("queued", "running")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
LOG_LINE_MAX = 4000


@dataclass(frozen=True)
class Job:
    """A training job as callers see it.

    Attributes:
        job_id: ``job_`` and 16 hex digits.
        status: ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``.
        outcome: For a succeeded job, ``registered`` or ``not_registered``; else the status.
        reason: One line saying what happened and why.
        result: The job's figures (metric, baseline, version, stage, trials...).
        cancel_requested: True once someone asked a running job to stop.
        parent_run_id: The job's run in the tracker, once it started.
        spec: The validated job body.
    """

    job_id: str
    tenant_id: str
    name: str
    model_name: str
    status: str
    outcome: str | None
    reason: str | None
    result: dict[str, Any] | None
    cancel_requested: bool
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parent_run_id: str | None
    spec: dict[str, Any]


@dataclass(frozen=True)
class LogLine:
    """One line of a job's log."""

    seq: int
    at: datetime
    line: str


def _job(row: TrainingJobRow) -> Job:
    aware = lifecycle_store.aware
    return Job(
        job_id=row.job_id,
        tenant_id=row.tenant_id,
        name=row.name,
        model_name=row.model_name,
        status=row.status,
        outcome=row.outcome,
        reason=row.reason,
        result=row.result,
        cancel_requested=row.cancel_requested,
        created_by=row.created_by,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
        parent_run_id=row.parent_run_id,
        spec=row.spec,
    )


def check_job_id(job_id: str) -> str:
    """Refuse anything that is not a job id (a 404 would hide a typo as 'not found')."""
    if not (
        isinstance(job_id, str)
        and len(job_id) == 20
        and job_id.startswith("job_")
        and all(c in "0123456789abcdef" for c in job_id[4:])
    ):
        raise ValidationError(
            f"{job_id!r} is not a job id (job_ and 16 hex digits).", details={"field": "job_id"}
        )
    return job_id


class JobService:
    """Submit, read, list and cancel a tenant's training jobs; the executor's bookkeeping.

    Args:
        db: The service database.
        settings: For the per-tenant limit and the operator's entry points.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._listeners: list[Callable[[], None]] = []

    def on_submit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each submit (an executor in this process wakes up);
        return the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ------------------------------------------------------------------ tenants' side

    def validate(self, body: Any) -> JobSpec:
        """Parse a job body with the operator's allow-list of entry points."""
        return validate_job(body, entry_points=self._settings.training_entry_points)

    def submit(self, tenant_id: str, body: Any, *, actor: str = "") -> Job:
        """Validate and queue a job.

        Raises:
            ValidationError: Naming the first bad field (``details["problems"]`` has all).
            LimitExceededError: The tenant has ``MATIH_TRAINING_MAX_JOBS`` jobs queued or
                running already.
        """
        spec = self.validate(body)
        limit = self._settings.training_max_jobs
        job_id = "job_" + secrets.token_hex(8)
        with self._db.uow(tenant=tenant_id) as s:
            self._lock_tenant(s, tenant_id)
            active = s.scalar(
                select(func.count())
                .select_from(TrainingJobRow)
                .where(TrainingJobRow.status.in_(ACTIVE))
            )
            if (active or 0) >= limit:
                raise LimitExceededError(
                    f"tenant {tenant_id!r} has {active} training jobs queued or running and "
                    f"the limit is {limit}: wait for one to finish, or cancel one.",
                    details={"limit": limit, "active": active},
                )
            at = lifecycle_store.now()
            row = TrainingJobRow(
                job_id=job_id,
                tenant_id=tenant_id,
                name=spec.name,
                model_name=spec.model_name,
                # What was sent (and what validation derived): validated again as it is.
                spec=spec.model_dump(mode="json", exclude_unset=True),
                status="queued",
                cancel_requested=False,
                created_by=actor,
                created_at=at,
            )
            s.add(row)
            self._log(s, job_id, [f"queued by {actor or '-'}"])
            s.flush()
            job = _job(row)
        for listener in self._listeners:
            listener()
        return job

    def get(self, tenant_id: str, job_id: str) -> Job:
        """One job of the tenant; NotFoundError for another tenant's."""
        with self._db.uow(tenant=tenant_id) as s:
            return _job(self._row(s, check_job_id(job_id)))

    def list(
        self, tenant_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Job]:
        """The tenant's jobs, newest first."""
        if status is not None and status not in STATUSES:
            raise ValidationError(
                f"status must be one of {', '.join(STATUSES)}.", details={"field": "status"}
            )
        q = select(TrainingJobRow)
        if status is not None:
            q = q.where(TrainingJobRow.status == status)
        q = q.order_by(TrainingJobRow.created_at.desc(), TrainingJobRow.job_id.desc())
        with self._db.uow(tenant=tenant_id) as s:
            return [_job(r) for r in s.scalars(q.offset(offset).limit(limit)).all()]

    def cancel(self, tenant_id: str, job_id: str, *, actor: str = "") -> Job:
        """Cancel a queued job now, or ask a running one to stop (it stops within seconds).

        Cancelling a cancelled job again is a no-op.

        Raises:
            ConflictError: The job has finished already.
        """
        check_job_id(job_id)
        with self._db.uow(tenant=tenant_id) as s:
            # A write first takes the row (or SQLite's database) before reading it.
            s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.job_id == job_id)
                .values(cancel_requested=TrainingJobRow.cancel_requested)
            )
            row = self._row(s, job_id)
            who = actor or "-"
            if row.status == "queued":
                row.status = row.outcome = "cancelled"
                row.reason = f"cancelled by {who} before it started"
                row.finished_at = lifecycle_store.now()
                self._log(s, job_id, [f"cancelled by {who} before it started"])
            elif row.status == "running" and not row.cancel_requested:
                row.cancel_requested = True
                self._log(s, job_id, [f"cancel requested by {who}"])
            elif row.status in ("succeeded", "failed"):
                raise ConflictError(
                    f"job {job_id} has {row.status} already: there is nothing to cancel.",
                    details={"status": row.status},
                )
            s.flush()
            return _job(row)

    def logs(
        self, tenant_id: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[LogLine]:
        """The job's log lines numbered above ``after``, oldest first."""
        check_job_id(job_id)
        with self._db.uow(tenant=tenant_id) as s:
            self._row(s, job_id)
            rows = s.scalars(
                select(TrainingJobLogRow)
                .where(TrainingJobLogRow.job_id == job_id, TrainingJobLogRow.seq > after)
                .order_by(TrainingJobLogRow.seq)
                .limit(limit)
            ).all()
            return [LogLine(r.seq, lifecycle_store.aware(r.at), r.line) for r in rows]  # type: ignore[arg-type]

    # ---------------------------------------------------------------- executor's side
    # The executor serves every tenant's queue: its bookkeeping works by job id, in
    # unscoped units of work.

    def claim(self, worker: str) -> Job | None:
        """Take the oldest queued job for ``worker``; None when there is none."""
        first = (
            select(TrainingJobRow.job_id)
            .where(TrainingJobRow.status == "queued")
            .order_by(TrainingJobRow.created_at, TrainingJobRow.job_id)
            .limit(1)
        )
        oldest = first.scalar_subquery()
        # Idle executors poll every second: a read first, so that an empty queue costs
        # no write (on SQLite a write takes the whole database's lock).
        with self._db.unscoped() as s:
            if s.scalar(first) is None:
                return None
        at = lifecycle_store.now()
        with self._db.unscoped() as s:
            # One statement, a write first: two executors cannot both take a job (the
            # loser's status test fails), and SQLite never has to upgrade a read lock.
            won = s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.job_id == oldest, TrainingJobRow.status == "queued")
                .values(status="running", worker=worker, started_at=at, heartbeat_at=at)
                .returning(TrainingJobRow.job_id)
            ).first()
            if won is None:
                return None
            self._log(s, won[0], [f"started on {worker}"])
            row = s.get(TrainingJobRow, won[0])
            assert row is not None
            return _job(row)

    def heartbeat(self, worker: str, job_ids: Sequence[str]) -> set[str]:
        """Mark ``worker``'s running jobs alive; return those asked to cancel."""
        if not job_ids:
            return set()
        with self._db.unscoped() as s:
            s.execute(
                update(TrainingJobRow)
                .where(
                    TrainingJobRow.job_id.in_(job_ids),
                    TrainingJobRow.worker == worker,
                    TrainingJobRow.status == "running",
                )
                .values(heartbeat_at=lifecycle_store.now())
            )
            return set(
                s.scalars(
                    select(TrainingJobRow.job_id).where(
                        TrainingJobRow.job_id.in_(job_ids), TrainingJobRow.cancel_requested
                    )
                ).all()
            )

    def append_log(self, job_id: str, lines: Sequence[str]) -> None:
        """Add lines to a job's log (each cut to LOG_LINE_MAX characters)."""
        if lines:
            with self._db.unscoped() as s:
                self._log(s, job_id, lines)

    def set_parent_run(self, job_id: str, run_id: str) -> None:
        """Record the job's run as soon as it exists (a crash later can still end it)."""
        with self._db.unscoped() as s:
            s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.job_id == job_id)
                .values(parent_run_id=run_id)
            )

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        outcome: str,
        reason: str,
        result: dict[str, Any] | None = None,
    ) -> Job:
        """Record how a running job ended."""
        with self._db.unscoped() as s:
            s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.job_id == job_id)
                .values(
                    status=status,
                    outcome=outcome,
                    reason=reason,
                    result=result,
                    finished_at=lifecycle_store.now(),
                )
            )
            self._log(s, job_id, [f"{status}: {reason}"])
            row = s.get(TrainingJobRow, job_id)
            assert row is not None
            return _job(row)

    def fail_stale(self, stale_s: float) -> list[Job]:
        """Fail running jobs whose executor stopped beating ``stale_s`` ago."""
        cutoff = lifecycle_store.now() - timedelta(seconds=stale_s)
        reason = f"interrupted: its executor stopped (no heartbeat for {stale_s:g} s)"
        stale = (TrainingJobRow.status == "running", TrainingJobRow.heartbeat_at < cutoff)
        with self._db.unscoped() as s:  # a read first: this runs every heartbeat, and is rarely due
            if s.scalar(select(TrainingJobRow.job_id).where(*stale).limit(1)) is None:
                return []
        with self._db.unscoped() as s:
            ids = s.scalars(
                update(TrainingJobRow)
                .where(*stale)
                .values(
                    status="failed",
                    outcome="failed",
                    reason=reason,
                    finished_at=lifecycle_store.now(),
                )
                .returning(TrainingJobRow.job_id)
            ).all()
            for job_id in ids:
                self._log(s, job_id, [f"failed: {reason}"])
            rows = s.scalars(select(TrainingJobRow).where(TrainingJobRow.job_id.in_(ids))).all()
            return [_job(r) for r in rows]

    # -------------------------------------------------------------------- internals

    @staticmethod
    def _lock_tenant(s: Session, tenant_id: str) -> None:
        # Insert-if-missing, then update: the update holds the row (PostgreSQL) or the
        # database (SQLite) until commit, so concurrent submits count one at a time.
        lifecycle_store.insert_if_missing(
            s, TrainingQuotaRow, {"tenant_id": tenant_id, "submits": 0}
        )
        s.execute(
            update(TrainingQuotaRow)
            .where(TrainingQuotaRow.tenant_id == tenant_id)
            .values(submits=TrainingQuotaRow.submits + 1)
        )

    @staticmethod
    def _row(s: Session, job_id: str) -> TrainingJobRow:
        # The session is the tenant's: another tenant's job is not found either.
        row = s.get(TrainingJobRow, job_id)
        if row is None:
            raise NotFoundError(f"training job {job_id!r} not found.")
        return row

    @staticmethod
    def _log(s: Session, job_id: str, lines: Sequence[str]) -> None:
        at = lifecycle_store.now()
        s.add_all(
            TrainingJobLogRow(job_id=job_id, at=at, line=line[:LOG_LINE_MAX]) for line in lines
        )
