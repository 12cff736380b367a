"""Batch job helpers: an executor running a module's jobs, tables under a tenant's root."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import update

from matih_ml.store.models import TrainingJobRow
from matih_ml.training.executor import JobExecutor

FEATURES = ["f0", "f1", "f2", "f3"]


def start_executor(services) -> JobExecutor:
    with services.db.unscoped() as s:  # other modules' queued jobs are not this module's
        s.execute(
            update(TrainingJobRow)
            .where(TrainingJobRow.status.in_(("queued", "running")))
            .values(status="cancelled")
        )
    ex = JobExecutor(services, workers=1, poll_s=0.1, heartbeat_s=0.2)
    ex.start()
    return ex


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    x = np.random.default_rng(seed).normal(size=(rows, len(FEATURES)))
    table = pd.DataFrame(x, columns=FEATURES)
    table.insert(0, "customer_id", np.arange(rows, dtype=np.int64))
    return table


def tenant_root(services, tenant: str) -> Path:
    root = Path(services.settings.tenant_data_root(tenant))
    root.mkdir(parents=True, exist_ok=True)
    return root


def wait(services, tenant: str, job_id: str, until=None, timeout: float = 240):
    """Poll the job until it has finished (or ``until(job)`` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = services.jobs.get(tenant, job_id)
        finished = job.status in ("succeeded", "failed", "cancelled")
        if finished or (until is not None and until(job)):
            return job
        time.sleep(0.1)
    lines = log_lines(services, tenant, job_id)
    raise AssertionError(f"job {job_id} did not get there: {job}\n" + "\n".join(lines))


def log_lines(services, tenant: str, job_id: str) -> list[str]:
    return [line.line for line in services.jobs.logs(tenant, job_id, limit=5000)]
