"""The job queue: the per-tenant limit under racing submits, claims, cancels, stale
executors. On the session's SQLite store and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from concurrency import in_threads
from conftest import embedded_settings, new_tenant_id
from matih_ml.errors import ConflictError, LimitExceededError, NotFoundError, ValidationError
from matih_ml.store import lifecycle_store
from matih_ml.store.models import TrainingJobRow
from matih_ml.training.jobs import JobService

BODY = {
    "name": "nightly",
    "model_name": "churn",
    "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    "data": {"kind": "table", "path": "churn.csv", "target": "label"},
    "evaluation": {"primary_metric": "accuracy"},
}


@pytest.fixture(autouse=True)
def empty_queue(services) -> None:
    """Claims take any tenant's oldest job: earlier tests' queued jobs are put away."""
    with services.db.unscoped() as s:
        s.execute(
            update(TrainingJobRow)
            .where(TrainingJobRow.status.in_(("queued", "running")))
            .values(status="cancelled")
        )


def _race(jobs: JobService, tenants: list[str], limit: int) -> None:
    """16 threads per tenant submit at once: each tenant gets exactly ``limit`` jobs."""
    accepted: dict[str, list[str]] = {t: [] for t in tenants}
    refused: dict[str, int] = dict.fromkeys(tenants, 0)
    lock = threading.Lock()

    def submit(i: int) -> None:
        tenant = tenants[i % len(tenants)]
        try:
            job = jobs.submit(tenant, BODY, actor=f"u{i}")
        except LimitExceededError as exc:
            assert exc.details == {"limit": limit, "active": limit}
            with lock:
                refused[tenant] += 1
            return
        with lock:
            accepted[tenant].append(job.job_id)

    in_threads(16 * len(tenants), submit)
    for tenant in tenants:
        assert len(accepted[tenant]) == limit, (tenant, accepted, refused)
        assert refused[tenant] == 16 - limit
        listed = {j.job_id for j in jobs.list(tenant)}
        assert listed == set(accepted[tenant])
    # Claims race too: every queued job is taken exactly once.
    claimed: list[str] = []

    def claim(i: int) -> None:
        while (job := jobs.claim(f"worker-{i}")) is not None:
            with lock:
                claimed.append(job.job_id)

    in_threads(6, claim)
    assert sorted(claimed) == sorted(j for ids in accepted.values() for j in ids)


@pytest.mark.parametrize("repeat", range(2))
def test_the_limit_holds_under_racing_submits_on_sqlite(services, repeat) -> None:
    tenants = [services.tenants.create_tenant(new_tenant_id("q")).tenant_id for _ in range(3)]
    _race(services.jobs, tenants, services.settings.training_max_jobs)


def test_the_limit_holds_under_racing_submits_on_postgresql(tmp_path, postgres_database) -> None:
    from matih_ml.services import build_services

    settings = embedded_settings(tmp_path).model_copy(
        update={
            "tracking_uri_env": postgres_database,
            "database_url_env": postgres_database,
            "auto_migrate_env": True,
            "training_max_jobs": 3,
        }
    )
    services = build_services(settings)
    try:
        tenants = [services.tenants.create_tenant(new_tenant_id("q")).tenant_id for _ in range(3)]
        _race(services.jobs, tenants, 3)
    finally:
        services.db.dispose()


def test_a_finished_job_frees_its_place(services, tenant) -> None:
    jobs = services.jobs
    first = [jobs.submit(tenant, BODY) for _ in range(2)]
    with pytest.raises(LimitExceededError, match="limit is 2"):
        jobs.submit(tenant, BODY)
    jobs.cancel(tenant, first[0].job_id, actor="ann")  # queued: cancelled at once
    assert jobs.get(tenant, first[0].job_id).status == "cancelled"
    jobs.submit(tenant, BODY)
    with pytest.raises(LimitExceededError):
        jobs.submit(tenant, BODY)


def test_bad_bodies_are_refused_naming_the_field_and_nothing_is_queued(services, tenant) -> None:
    with pytest.raises(ValidationError) as bad:
        services.jobs.submit(tenant, {**BODY, "resources": {"num_workers": 0}})
    assert bad.value.details["field"] == "resources.num_workers"
    with pytest.raises(ValidationError) as bad:
        services.jobs.submit(
            tenant, {**BODY, "trainer": {"kind": "entry_point", "entry_point": "os:system"}}
        )
    assert bad.value.details["field"] == "trainer.entry_point"
    assert services.jobs.list(tenant) == []


def test_cancel_states_and_other_tenants(services, tenant, other_tenant) -> None:
    jobs = services.jobs
    job = jobs.submit(tenant, BODY, actor="ann")
    for call in (jobs.get, jobs.cancel, jobs.logs):
        with pytest.raises(NotFoundError):
            call(other_tenant, job.job_id)
    assert jobs.list(other_tenant) == []
    with pytest.raises(ValidationError):
        jobs.get(tenant, "job_../../etc")

    running = jobs.claim("w1")
    assert running is not None and running.job_id == job.job_id and running.status == "running"
    assert jobs.claim("w2") is None
    asked = jobs.cancel(tenant, job.job_id, actor="bob")
    assert asked.status == "running" and asked.cancel_requested
    assert jobs.heartbeat("w1", [job.job_id]) == {job.job_id}
    done = jobs.finish(job.job_id, "cancelled", outcome="cancelled", reason="cancelled")
    assert jobs.cancel(tenant, job.job_id).status == "cancelled"  # again: a no-op
    assert done.finished_at is not None
    lines = [line.line for line in jobs.logs(tenant, job.job_id)]
    assert lines == ["queued by ann", "started on w1", "cancel requested by bob", lines[-1]]
    assert lines[-1].startswith("cancelled")
    finished = jobs.submit(tenant, BODY)
    jobs.claim("w1")
    jobs.finish(finished.job_id, "succeeded", outcome="not_registered", reason="x")
    with pytest.raises(ConflictError, match="succeeded already"):
        jobs.cancel(tenant, finished.job_id)


def test_a_dead_executors_job_is_failed_and_its_run_ended(services, tenant) -> None:
    from matih_ml.training.executor import JobExecutor

    job = services.jobs.submit(tenant, BODY)
    services.jobs.claim("gone-host:1:abc")
    run = services.runs.create_run(tenant, "jobs/churn", job_id=job.job_id)
    services.jobs.set_parent_run(job.job_id, run.info.run_id)
    with services.db.unscoped() as s:
        old = lifecycle_store.now() - timedelta(seconds=600)
        s.execute(
            update(TrainingJobRow)
            .where(TrainingJobRow.job_id == job.job_id)
            .values(heartbeat_at=old)
        )
    executor = JobExecutor(services, workers=1, heartbeat_s=0.05)
    executor.start()
    try:
        deadline = threading.Event()
        for _ in range(200):
            if services.jobs.get(tenant, job.job_id).status == "failed":
                break
            deadline.wait(0.05)
    finally:
        executor.stop()
    failed = services.jobs.get(tenant, job.job_id)
    assert failed.status == "failed" and "interrupted" in (failed.reason or "")
    assert services.runs.get_run(tenant, run.info.run_id).info.status == "FAILED"
    completed = [
        e
        for e in services.events.feed(tenant, limit=1000)
        if e["type"] == "MODEL_TRAINING_COMPLETED" and e["data"]["run_id"] == run.info.run_id
    ]
    assert len(completed) == 1
    assert completed[0]["data"]["job_id"] == job.job_id
    assert completed[0]["data"]["outcome"]["status"] == "failed"
