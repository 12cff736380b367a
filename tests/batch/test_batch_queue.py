"""Batch jobs in the shared queue: submitted against the tenant's own model and paths,
seen only under their kind, with progress; training jobs as before."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from matih_ml.errors import NotFoundError, ValidationError

TRAINING = {
    "name": "nightly",
    "model_name": "churn",
    "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    "data": {"kind": "table", "path": "churn.csv", "target": "label"},
    "evaluation": {"primary_metric": "accuracy"},
}


def batch(**overrides) -> dict:
    return {
        "model": "churn",
        "input": {"path": "in/today.parquet"},
        "output": {"path": "out/today.parquet"},
        **overrides,
    }


@pytest.fixture
def with_model(services, tenant) -> str:
    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    services.registry.register_model(tenant, "churn", model, "sklearn", {}, {})
    return tenant


def test_a_batch_job_queues_as_its_kind_and_is_seen_only_as_it(services, with_model) -> None:
    tenant = with_model
    job = services.jobs.submit_batch(tenant, batch(name="scores"), actor="ci")
    trained = services.jobs.submit(tenant, TRAINING)

    assert job.kind == "batch" and job.model_name == "churn" and job.name == "scores"
    assert job.status == "queued" and job.progress is None
    assert job.spec["input"] == {"path": "in/today.parquet"}
    assert trained.kind == "training"
    assert services.jobs.get(tenant, job.job_id, kind="batch").job_id == job.job_id
    assert services.jobs.get(tenant, job.job_id).kind == "batch"
    with pytest.raises(NotFoundError):
        services.jobs.get(tenant, job.job_id, kind="training")
    with pytest.raises(NotFoundError):
        services.jobs.get(tenant, trained.job_id, kind="batch")
    with pytest.raises(NotFoundError):
        services.jobs.logs(tenant, trained.job_id, kind="batch")
    with pytest.raises(NotFoundError):
        services.jobs.cancel(tenant, trained.job_id, kind="batch")
    assert [j.job_id for j in services.jobs.list(tenant, kind="batch")] == [job.job_id]
    assert [j.job_id for j in services.jobs.list(tenant, kind="training")] == [trained.job_id]
    assert len(services.jobs.list(tenant)) == 2
    lines = [line.line for line in services.jobs.logs(tenant, job.job_id, kind="batch")]
    assert lines == ["queued by ci"]

    cancelled = services.jobs.cancel(tenant, job.job_id, kind="batch")
    assert cancelled.status == "cancelled" and cancelled.kind == "batch"
    services.jobs.cancel(tenant, trained.job_id)


def test_an_unknown_kind_is_a_422(services, tenant) -> None:
    with pytest.raises(ValidationError) as caught:
        services.jobs.list(tenant, kind="inference")
    assert caught.value.details["field"] == "kind"


def test_a_model_the_tenant_lacks_is_not_found(services, with_model, other_tenant) -> None:
    with pytest.raises(NotFoundError):
        services.jobs.submit_batch(other_tenant, batch())
    with pytest.raises(NotFoundError):
        services.jobs.submit_batch(with_model, batch(model="nope"))
    assert services.jobs.list(other_tenant) == []


def test_a_path_outside_the_tenants_root_names_its_field(services, with_model) -> None:
    with pytest.raises(ValidationError) as caught:
        services.jobs.submit_batch(with_model, batch(input={"path": "s3://lake/x/in.parquet"}))
    # This server's data root is a folder: no s3:// path is the tenant's.
    assert caught.value.details["field"] == "input.path"
    with pytest.raises(ValidationError) as caught:
        services.jobs.submit_batch(with_model, batch(output={"path": "../x/out.parquet"}))
    assert caught.value.details["field"] == "output.path"


def test_progress_is_recorded_with_the_version(services, with_model) -> None:
    job = services.jobs.submit_batch(with_model, batch())
    services.jobs.set_progress(job.job_id, 0, 1000, version="1")
    services.jobs.set_progress(job.job_id, 500, 1000, version="1")
    got = services.jobs.get(with_model, job.job_id, kind="batch")
    assert got.progress == {"rows_done": 500, "rows_total": 1000, "version": "1"}
    services.jobs.cancel(with_model, job.job_id)


@pytest.mark.parametrize("output", ["out/today.parquet", "out/folder"])
def test_a_dead_executors_batch_job_leaves_no_temporary_output(
    services, with_model, output
) -> None:
    """An executor dies mid-write: the job is failed as stale and the hidden file it was
    writing is deleted; the final path keeps what it held."""
    import threading
    from datetime import timedelta
    from pathlib import Path

    from sqlalchemy import update

    from matih_ml.batch.paths import plan_output
    from matih_ml.store import lifecycle_store
    from matih_ml.store.models import TrainingJobRow
    from matih_ml.training.executor import JobExecutor

    tenant = with_model
    with services.db.unscoped() as s:  # claims take any tenant's oldest job
        s.execute(
            update(TrainingJobRow)
            .where(TrainingJobRow.status.in_(("queued", "running")))
            .values(status="cancelled")
        )
    job = services.jobs.submit_batch(tenant, batch(output={"path": output}), actor="ci")
    assert services.jobs.claim("gone-host:1:abc", kinds=("batch",)).job_id == job.job_id
    root = services.settings.tenant_data_root(tenant)
    planned = plan_output(services.jobs.validate_batch(tenant, job.spec), root, job.job_id)
    Path(planned.temporary).write_bytes(b"half a parquet file")
    earlier = Path(root) / "out" / "today.parquet"
    if output.endswith(".parquet"):
        earlier.write_bytes(b"yesterday's scores")
    with services.db.unscoped() as s:
        s.execute(
            update(TrainingJobRow)
            .where(TrainingJobRow.job_id == job.job_id)
            .values(heartbeat_at=lifecycle_store.now() - timedelta(seconds=600))
        )
    executor = JobExecutor(services, workers=1, heartbeat_s=0.05)
    executor.start()
    try:
        for _ in range(200):
            if services.jobs.get(tenant, job.job_id, kind="batch").status == "failed":
                break
            threading.Event().wait(0.05)
    finally:
        executor.stop()
    failed = services.jobs.get(tenant, job.job_id, kind="batch")
    assert failed.status == "failed" and "interrupted" in (failed.reason or "")
    assert not Path(planned.temporary).exists()
    if output.endswith(".parquet"):
        assert earlier.read_bytes() == b"yesterday's scores"
    else:
        assert list(Path(planned.final).parent.iterdir()) == []
