"""Jobs as a resource: submit, read, list, cancel, and their logs.

A job is a row in the service database: a training job, or a batch inference job (its
``kind``). Submitting validates the body and queues it; an executor
(:mod:`~matih_ml.training.executor`) in any replica claims it, runs it and records what
happened. Both kinds share the table, the queue, the executor, the per-tenant limit,
cancelling and logs. Everything here is tenant-scoped: another tenant's job is a 404, and
so is a job of another kind than the one asked for.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from matih_ml.batch_spec import BatchSpec, check_under_root, validate_batch
from matih_ml.config import Settings
from matih_ml.errors import ConflictError, LimitExceededError, NotFoundError, ValidationError
from matih_ml.job_spec import JobSpec, validate_job
from matih_ml.store import lifecycle_store
from matih_ml.store.db import Database
from matih_ml.store.models import TrainingJobLogRow, TrainingJobRow, TrainingQuotaRow
from matih_ml.training.job_records import (
    ACTIVE,
    JOB_ID_PATTERN,
    KINDS,
    LOG_LINE_MAX,
    STATUSES,
    Job,
    LogLine,
    check_job_id,
    check_kind,
    job_of,
)

__all__ = [
    "ACTIVE",
    "JOB_ID_PATTERN",
    "KINDS",
    "LOG_LINE_MAX",
    "STATUSES",
    "Job",
    "JobService",
    "LogLine",
    "check_job_id",
]

# (tenant, model) -> raises NotFoundError for a model the tenant does not have.
RequireModel = Callable[[str, str], object]


class JobService:
    """Submit, read, list and cancel a tenant's jobs; the executor's bookkeeping.

    Args:
        db: The service database.
        settings: For the per-tenant limit, the operator's entry points and the tenants'
            data roots.
        require_model: Raises NotFoundError for a model the tenant does not have (a batch
            job names one); without it, a batch job's model is checked when it runs.
    """

    def __init__(
        self, db: Database, settings: Settings, *, require_model: RequireModel | None = None
    ) -> None:
        self._db = db
        self._settings = settings
        self._require_model = require_model
        self._listeners: list[Callable[[], None]] = []

    def on_submit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each submit (an executor in this process wakes up);
        return the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ------------------------------------------------------------------ tenants' side

    def validate(self, body: Any) -> JobSpec:
        """Parse a training job body with the operator's allow-list of entry points."""
        return validate_job(body, entry_points=self._settings.training_entry_points)

    def validate_batch(self, tenant_id: str, body: Any) -> BatchSpec:
        """Parse a batch job body and check its paths are under the tenant's data root.

        Raises:
            ValidationError: Naming the first bad field (a path elsewhere: its field).
        """
        spec = validate_batch(body)
        check_under_root(spec, self._settings.tenant_data_root(tenant_id))
        return spec

    def submit(self, tenant_id: str, body: Any, *, actor: str = "") -> Job:
        """Validate and queue a training job.

        Raises:
            ValidationError: Naming the first bad field (``details["problems"]`` has all).
            LimitExceededError: The tenant has ``MATIH_TRAINING_MAX_JOBS`` jobs queued or
                running already.
        """
        spec = self.validate(body)
        # What was sent (and what validation derived): validated again as it is.
        stored = spec.model_dump(mode="json", exclude_unset=True)
        return self._queue(tenant_id, "training", spec.name, spec.model_name, stored, actor)

    def submit_batch(self, tenant_id: str, body: Any, *, actor: str = "") -> Job:
        """Validate and queue a batch inference job (``kind="batch"``).

        Raises:
            ValidationError: Naming the first bad field; a path outside the tenant's data
                root names ``input.path`` or ``output.path``.
            NotFoundError: The tenant has no such model.
            LimitExceededError: As :meth:`submit` (both kinds count towards one limit).
        """
        spec = self.validate_batch(tenant_id, body)
        if self._require_model is not None:
            self._require_model(tenant_id, spec.model)
        stored = spec.model_dump(mode="json", exclude_unset=True)
        return self._queue(tenant_id, "batch", spec.name, spec.model, stored, actor)

    def _queue(
        self, tenant_id: str, kind: str, name: str, model: str, spec: dict[str, Any], actor: str
    ) -> Job:
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
                    f"tenant {tenant_id!r} has {active} jobs queued or running and "
                    f"the limit is {limit}: wait for one to finish, or cancel one.",
                    details={"limit": limit, "active": active},
                )
            row = TrainingJobRow(
                job_id=job_id,
                tenant_id=tenant_id,
                kind=kind,
                name=name,
                model_name=model,
                spec=spec,
                status="queued",
                cancel_requested=False,
                created_by=actor,
                created_at=lifecycle_store.now(),
            )
            s.add(row)
            self._log(s, job_id, [f"queued by {actor or '-'}"])
            s.flush()
            job = job_of(row)
        for listener in self._listeners:
            listener()
        return job

    def get(self, tenant_id: str, job_id: str, *, kind: str | None = None) -> Job:
        """One job of the tenant; NotFoundError for another tenant's, or another kind's."""
        with self._db.uow(tenant=tenant_id) as s:
            return job_of(self._row(s, check_job_id(job_id), check_kind(kind)))

    def list(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
        kind: str | None = None,
    ) -> list[Job]:
        """The tenant's jobs (of ``kind``, or of every kind), newest first."""
        if status is not None and status not in STATUSES:
            raise ValidationError(
                f"status must be one of {', '.join(STATUSES)}.", details={"field": "status"}
            )
        q = select(TrainingJobRow)
        if status is not None:
            q = q.where(TrainingJobRow.status == status)
        if check_kind(kind) is not None:
            q = q.where(TrainingJobRow.kind == kind)
        q = q.order_by(TrainingJobRow.created_at.desc(), TrainingJobRow.job_id.desc())
        with self._db.uow(tenant=tenant_id) as s:
            return [job_of(r) for r in s.scalars(q.offset(offset).limit(limit)).all()]

    def cancel(
        self, tenant_id: str, job_id: str, *, actor: str = "", kind: str | None = None
    ) -> Job:
        """Cancel a queued job now, or ask a running one to stop (it stops within seconds).

        Cancelling a cancelled job again is a no-op.

        Raises:
            NotFoundError: Another tenant's job, or another kind's.
            ConflictError: The job has finished already.
        """
        check_job_id(job_id)
        check_kind(kind)
        with self._db.uow(tenant=tenant_id) as s:
            # A write first takes the row (or SQLite's database) before reading it.
            s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.job_id == job_id)
                .values(cancel_requested=TrainingJobRow.cancel_requested)
            )
            row = self._row(s, job_id, kind)
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
            return job_of(row)

    def logs(
        self,
        tenant_id: str,
        job_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        kind: str | None = None,
    ) -> list[LogLine]:
        """The job's log lines numbered above ``after``, oldest first."""
        check_job_id(job_id)
        check_kind(kind)
        with self._db.uow(tenant=tenant_id) as s:
            self._row(s, job_id, kind)
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

    def claim(self, worker: str, *, kinds: Sequence[str] = KINDS) -> Job | None:
        """Take the oldest queued job of ``kinds`` for ``worker``; None when there is none."""
        first = (
            select(TrainingJobRow.job_id)
            .where(TrainingJobRow.status == "queued", TrainingJobRow.kind.in_(kinds))
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
            return job_of(row)

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

    def set_progress(
        self, job_id: str, rows_done: int, rows_total: int | None, *, version: str | None = None
    ) -> None:
        """Record a running batch job's rows scored of the total (and the version it uses)."""
        progress: dict[str, Any] = {"rows_done": int(rows_done), "rows_total": rows_total}
        if version is not None:
            progress["version"] = version
        with self._db.unscoped() as s:
            s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.job_id == job_id)
                .values(progress=progress)
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
            return job_of(row)

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
            return [job_of(r) for r in rows]

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
    def _row(s: Session, job_id: str, kind: str | None = None) -> TrainingJobRow:
        # The session is the tenant's: another tenant's job is not found either, and
        # neither is a job of another kind (a batch job's id on the training jobs' path).
        row = s.get(TrainingJobRow, job_id)
        if row is None or (kind is not None and row.kind != kind):
            raise NotFoundError(f"{kind or 'the'} job {job_id!r} not found.")
        return row

    @staticmethod
    def _log(s: Session, job_id: str, lines: Sequence[str]) -> None:
        at = lifecycle_store.now()
        s.add_all(
            TrainingJobLogRow(job_id=job_id, at=at, line=line[:LOG_LINE_MAX]) for line in lines
        )
