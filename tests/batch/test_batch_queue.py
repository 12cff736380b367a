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
