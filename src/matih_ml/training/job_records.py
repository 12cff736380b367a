"""What callers see of a job (training or batch inference), and the rules on its id.

Split from :mod:`~matih_ml.training.jobs` (which re-exports all of it) so that the service
module holds the queue's logic alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from matih_ml.errors import ValidationError
from matih_ml.store import lifecycle_store
from matih_ml.store.models import TrainingJobRow

JOB_ID_PATTERN = r"^job_[a-f0-9]{16}$"
ACTIVE = ("queued", "running")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
# A job's kind: one table, one queue and one executor for both.
KINDS = ("training", "batch")
LOG_LINE_MAX = 4000


@dataclass(frozen=True)
class Job:
    """A job as callers see it.

    Attributes:
        job_id: ``job_`` and 16 hex digits.
        status: ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``.
        outcome: For a succeeded training job, ``registered`` or ``not_registered``; a
            succeeded batch job's is ``succeeded``; else the status.
        reason: One line saying what happened and why.
        result: The job's figures (training: metric, baseline, version, stage, trials...;
            batch: version, rows, output, columns).
        cancel_requested: True once someone asked a running job to stop.
        parent_run_id: The job's run in the tracker, once it started (training only).
        spec: The validated job body.
        kind: ``training`` or ``batch``.
        progress: A batch job's ``{"rows_done", "rows_total", "version"}`` once it has
            started (``rows_total`` None when the input's size is not known up front).
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
    kind: str = "training"
    progress: dict[str, Any] | None = None


@dataclass(frozen=True)
class LogLine:
    """One line of a job's log."""

    seq: int
    at: datetime
    line: str


def job_of(row: TrainingJobRow) -> Job:
    """The row as callers see it."""
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
        kind=row.kind or "training",
        progress=row.progress,
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


def check_kind(kind: str | None) -> str | None:
    """Refuse a kind that is not one (None: every kind)."""
    if kind is not None and kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}.", details={"field": "kind"})
    return kind
