"""The batch-scoring jobs endpoints: who may do what, another tenant's view, bad bodies,
the two kinds of job kept apart, and a small job end to end (submit, run, read the
output parquet)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from api.helpers import TRAINING_JOB, error, ok, register
from conftest import ApiTenant, new_tenant_id
from matih_ml.store.models import TrainingJobRow

JOBS = "/api/v1/batch-jobs"
FEATURES = ["f0", "f1", "f2", "f3"]


def batch_job(**overrides) -> dict:
    """A valid job naming the model ``churn`` and a table nobody needs to have written
    (no executor runs in most of these tests: the job stays queued)."""
    return {
        "name": "nightly-scores",
        "model": "churn",
        "input": {"path": "in/customers.parquet"},
        "columns": FEATURES,
        "key_columns": ["id"],
        "output": {"path": "out/scores.parquet"},
        "batch_size": 64,
        **overrides,
    }


@pytest.fixture
def acme(api, services, saved_sklearn_model) -> Iterator[ApiTenant]:
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("bj")).tenant_id)
    register(t.editor, saved_sklearn_model)
    yield t
    t.close()


@pytest.fixture
def globex(api, services) -> Iterator[ApiTenant]:
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("bk")).tenant_id)
    yield t
    t.close()


def test_submit_read_list_cancel_and_logs(acme) -> None:
    job = ok(acme.editor.post(JOBS, json=batch_job()), 201)
    assert job["kind"] == "batch" and job["status"] == "queued"
    assert job["created_by"] == "editor-key" and job["model_name"] == "churn"
    assert job["spec"]["stage"] == "production"  # no version named: production's
    assert job["version"] is None  # resolved when the job starts, not before
    assert ok(acme.viewer.get(f"{JOBS}/{job['job_id']}")) == job
    listed = ok(acme.viewer.get(JOBS, params={"status": "queued"}))
    assert [j["job_id"] for j in listed["items"]] == [job["job_id"]]
    assert ok(acme.viewer.get(JOBS, params={"status": "failed"}))["items"] == []
    # A viewer may read, not submit or cancel.
    assert error(acme.viewer.post(JOBS, json=batch_job()), 403)["code"] == "FORBIDDEN"
    error(acme.viewer.post(f"{JOBS}/{job['job_id']}/cancel"), 403)
    assert ok(acme.viewer.get(f"{JOBS}/{job['job_id']}"))["status"] == "queued"
    cancelled = ok(acme.editor.post(f"{JOBS}/{job['job_id']}/cancel"))
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert ok(acme.editor.post(f"{JOBS}/{job['job_id']}/cancel"))["status"] == "cancelled"
    logs = ok(acme.viewer.get(f"{JOBS}/{job['job_id']}/logs"))
    lines = [i["line"] for i in logs["items"]]
    assert lines[0] == "queued by editor-key" and "cancelled" in lines[-1]
    more = ok(acme.viewer.get(f"{JOBS}/{job['job_id']}/logs", params={"after": logs["next_after"]}))
    assert more == {"items": [], "next_after": logs["next_after"]}


def test_pages_of_jobs(acme) -> None:
    for _ in range(3):  # queued then cancelled, to stay under the limit
        job = ok(acme.editor.post(JOBS, json=batch_job()), 201)
        ok(acme.editor.post(f"{JOBS}/{job['job_id']}/cancel"))
    first = ok(acme.viewer.get(JOBS, params={"limit": 2}))
    rest = ok(acme.viewer.get(JOBS, params={"limit": 2, "page_token": first["next_page_token"]}))
    assert len(first["items"]) == 2 and len(rest["items"]) == 1
    assert rest["next_page_token"] is None


def test_a_training_job_is_not_a_batch_job_nor_the_other_way(acme) -> None:
    training = ok(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)["job_id"]
    batch = ok(acme.editor.post(JOBS, json=batch_job()), 201)["job_id"]
    for method, path in (
        ("GET", f"{JOBS}/{training}"),
        ("POST", f"{JOBS}/{training}/cancel"),
        ("GET", f"{JOBS}/{training}/logs"),
        ("GET", f"/api/v1/training-jobs/{batch}"),
        ("POST", f"/api/v1/training-jobs/{batch}/cancel"),
        ("GET", f"/api/v1/training-jobs/{batch}/logs"),
    ):
        assert error(acme.admin.request(method, path), 404)["code"] == "NOT_FOUND", path
    assert [j["job_id"] for j in ok(acme.viewer.get(JOBS))["items"]] == [batch]
    listed = ok(acme.viewer.get("/api/v1/training-jobs"))["items"]
    assert [j["job_id"] for j in listed] == [training]
    # Neither was touched by the other's routes.
    assert ok(acme.viewer.get(f"/api/v1/training-jobs/{training}"))["status"] == "queued"
    assert ok(acme.viewer.get(f"{JOBS}/{batch}"))["status"] == "queued"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model": "bad/name"}, "model"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 100_001}, "batch_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"stage": "development"}, "stage"),
        ({"stage": "staging", "version": "2"}, "version"),
        ({"input": {"path": "in.parquet", "format": "xlsx"}}, "input.format"),
        ({"input": {"path": "/etc/passwd"}}, "input.path"),
        ({"input": {"path": "../other/in.parquet"}}, "input.path"),
        ({"output": {"path": "out/scores.csv"}}, "output.path"),
        ({"key_columns": ["prediction"]}, "key_columns"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_a_bad_job_is_a_422_naming_the_field(acme, patch, field) -> None:
    body = error(acme.editor.post(JOBS, json={**batch_job(), **patch}), 422)
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field, body
    assert ok(acme.viewer.get(JOBS))["items"] == []


@pytest.mark.parametrize("missing", ["model", "input", "output"])
def test_a_missing_field_is_named(acme, missing) -> None:
    body = batch_job()
    del body[missing]
    assert error(acme.editor.post(JOBS, json=body), 422)["details"]["field"] == missing


def test_not_json_and_not_an_object_are_422(acme) -> None:
    r = acme.editor.post(JOBS, content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert error(acme.editor.post(JOBS, json=[1, 2]), 422)["code"] == "VALIDATION_ERROR"


def test_another_tenants_key_sees_nothing_and_reaches_nothing(
    acme, globex, saved_sklearn_model
) -> None:
    job = ok(acme.editor.post(JOBS, json=batch_job()), 201)["job_id"]
    for method, path in (
        ("GET", f"{JOBS}/{job}"),
        ("POST", f"{JOBS}/{job}/cancel"),
        ("GET", f"{JOBS}/{job}/logs"),
    ):
        assert error(globex.admin.request(method, path), 404)["code"] == "NOT_FOUND"
    assert ok(globex.admin.get(JOBS))["items"] == []
    # acme's model is not globex's to score with.
    assert error(globex.editor.post(JOBS, json=batch_job()), 404)["code"] == "NOT_FOUND"
    # With a model of its own, acme's files are still out of reach: a relative path stays
    # under globex's root, and no s3:// path is under a root on local disk.
    register(globex.editor, saved_sklearn_model)
    for patch, field in (
        ({"input": {"path": f"../{acme.tenant_id}/in/customers.parquet"}}, "input.path"),
        ({"input": {"path": f"s3://data/{acme.tenant_id}/in.parquet"}}, "input.path"),
        ({"output": {"path": f"../{acme.tenant_id}/stolen.parquet"}}, "output.path"),
        ({"output": {"path": f"s3://data/{acme.tenant_id}/out.parquet"}}, "output.path"),
    ):
        body = error(globex.editor.post(JOBS, json=batch_job(**patch)), 422)
        assert body["details"]["field"] == field, body
    assert ok(globex.admin.get(JOBS))["items"] == []
    assert ok(acme.viewer.get(f"{JOBS}/{job}"))["status"] == "queued"


# ------------------------------------------------------------------ end to end


@pytest.fixture
def executor(services, local_ray) -> Iterator[None]:
    from matih_ml.training.executor import JobExecutor

    with services.db.unscoped() as s:  # other tests' queued jobs are not this test's
        s.execute(
            update(TrainingJobRow)
            .where(TrainingJobRow.status.in_(("queued", "running")))
            .values(status="cancelled")
        )
    ex = JobExecutor(services, workers=1, poll_s=0.1, heartbeat_s=0.2)
    ex.start()
    yield
    ex.stop()


def wait_for(client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = ok(client.get(f"{JOBS}/{job_id}"))
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_a_job_scores_a_table_into_parquet_end_to_end(acme, services, sk_model, executor) -> None:
    ok(acme.admin.put("/api/v1/policy", json={"production": {"require_approval": False}}))
    for stage in ("staging", "production"):
        stage_body = {"version": "1", "stage": stage}
        ok(acme.editor.put("/api/v1/models/churn/stage", json=stage_body))
    rows = 1_000
    x = np.random.default_rng(7).normal(size=(rows, len(FEATURES)))
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.insert(0, "id", np.arange(rows) * 3)
    root = Path(services.settings.tenant_data_root(acme.tenant_id))
    (root / "in").mkdir(parents=True, exist_ok=True)
    frame.to_parquet(root / "in" / "customers.parquet", index=False)

    job = ok(acme.editor.post(JOBS, json=batch_job(concurrency=1)), 201)
    done = wait_for(acme.viewer, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["version"] == "1"
    assert done["progress"] == {"rows_done": rows, "rows_total": rows}
    assert done["result"]["rows"] == rows
    assert done["result"]["output"] == "out/scores.parquet"

    out = pd.read_parquet(root / "out" / "scores.parquet").sort_values("id")
    assert out["id"].tolist() == frame["id"].tolist()  # every row once, keys kept
    assert out["prediction"].tolist() == sk_model.predict(x).tolist()
    assert set(out["model_version"].astype(str)) == {"1"}
    logs = ok(acme.viewer.get(f"{JOBS}/{job['job_id']}/logs"))["items"]
    assert logs[0]["line"] == "queued by editor-key" and len(logs) > 1
