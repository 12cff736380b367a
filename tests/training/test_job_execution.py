"""Jobs run by an executor, end to end over HTTP: the job's run, its log, its two
events with the outcome, lineage on the version; a running job cancelled; the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from api.helpers import ok, wait_for_job
from conftest import ApiTenant, new_tenant_id
from matih_ml.store.models import TrainingJobRow
from matih_ml.training.executor import JobExecutor

FEATURES = [f"f{i}" for i in range(5)]


@pytest.fixture(scope="module")
def executor(services) -> Iterator[JobExecutor]:
    with services.db.unscoped() as s:  # other modules' queued jobs are not this module's
        s.execute(
            update(TrainingJobRow)
            .where(TrainingJobRow.status.in_(("queued", "running")))
            .values(status="cancelled")
        )
    ex = JobExecutor(services, workers=1, poll_s=0.1, heartbeat_s=0.2)
    ex.start()
    yield ex
    ex.stop()
    import ray

    # A job started the local Ray; stopping the executor stops it, agents and all.
    assert not ray.is_initialized()


@pytest.fixture
def acme(api, services, executor):
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("je")).tenant_id)
    yield t
    t.close()


def write_table(services, tenant: str, name: str = "churn.csv", rows: int = 400) -> Path:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, len(FEATURES)))
    y = (x[:, 0] - x[:, 1] + rng.normal(0, 0.3, rows) > 0).astype(int)
    root = Path(services.settings.tenant_data_root(tenant))
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(x, columns=FEATURES).assign(label=y).to_csv(root / name, index=False)
    return root / name


def body(**overrides) -> dict:
    return {
        "name": "nightly",
        "model_name": "churn",
        "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
        "data": {"kind": "table", "path": "churn.csv", "target": "label"},
        "evaluation": {"primary_metric": "accuracy"},
        "tags": {"team": "growth"},
        **overrides,
    }


def run_experiment(tenant: ApiTenant, job: dict) -> str:
    return ok(tenant.viewer.get(f"/api/v1/runs/{job['parent_run_id']}"))["experiment_id"]


def job_events(services, tenant: str, job_id: str) -> list[dict]:
    return [
        e
        for e in services.events.feed(tenant, limit=1000)
        if e["type"].startswith("MODEL_TRAINING") and e["data"].get("job_id") == job_id
    ]


def test_a_job_runs_registers_stages_and_says_why(acme, services) -> None:
    write_table(services, acme.tenant_id)
    job = ok(acme.editor.post("/api/v1/training-jobs", json=body()), 201)
    done = wait_for_job(acme.viewer, job["job_id"], ("succeeded", "failed", "cancelled"))

    assert done["status"] == "succeeded", done
    assert done["outcome"] == "registered"
    assert done["reason"].startswith("registered v1: accuracy 0.9")
    assert done["reason"].endswith("(no production baseline); moved to staging")
    result = done["result"]
    assert result["registered_version"] == "1" and result["stage"] == "staging"
    assert result["value"] > 0.85 and result["rows"] == 400
    run = ok(acme.viewer.get(f"/api/v1/runs/{done['parent_run_id']}"))
    assert run["status"] == "FINISHED" and run["tags"]["matih.job_id"] == job["job_id"]
    version = ok(acme.viewer.get("/api/v1/models/churn/versions/1"))
    assert version["stage"] == "staging"
    assert version["tags"]["job_id"] == job["job_id"]
    assert version["tags"]["training_run_id"] == done["parent_run_id"]

    lines = [
        i["line"]
        for i in ok(acme.viewer.get(f"/api/v1/training-jobs/{job['job_id']}/logs"))["items"]
    ]
    assert lines[0] == "queued by editor-key" and lines[1].startswith("started on ")
    assert any(line.startswith("read 400 rows, 5 features") for line in lines)
    assert any(line.startswith("holdout accuracy") for line in lines)
    assert lines[-1] == f"succeeded: {done['reason']}"

    events = job_events(services, acme.tenant_id, job["job_id"])
    assert [e["type"] for e in events] == ["MODEL_TRAINING_STARTED", "MODEL_TRAINING_COMPLETED"]
    outcome = events[1]["data"]["outcome"]
    assert outcome == {
        "status": "registered",
        "reason": done["reason"],
        "registered_version": "1",
        "stage": "staging",
    }
    assert events[1]["data"]["status"] == "FINISHED"


def test_a_job_with_bad_data_fails_with_its_reason_and_its_run_failed(acme, services) -> None:
    write_table(services, acme.tenant_id)
    bad = body(data={"kind": "table", "path": "churn.csv", "target": "nope"})
    job = ok(acme.editor.post("/api/v1/training-jobs", json=bad), 201)
    done = wait_for_job(acme.viewer, job["job_id"], ("succeeded", "failed", "cancelled"))
    assert done["status"] == "failed" and done["outcome"] == "failed"
    assert done["reason"] == "data: column 'nope' is not in the table"
    assert ok(acme.viewer.get(f"/api/v1/runs/{done['parent_run_id']}"))["status"] == "FAILED"
    events = job_events(services, acme.tenant_id, job["job_id"])
    assert events[-1]["data"]["outcome"]["status"] == "failed"
    assert events[-1]["data"]["outcome"]["reason"] == f"failed: {done['reason']}"


@pytest.mark.slow
def test_a_running_tuning_job_is_cancelled_and_its_run_killed(acme, services) -> None:
    write_table(services, acme.tenant_id, rows=2000)
    tuning = {
        "search_space": {"C": {"loguniform": [0.001, 10.0]}},
        "num_samples": 200,
        "metric": "accuracy",
        "mode": "max",
        "scheduler": "none",
        "max_concurrent_trials": 1,
    }
    job = ok(acme.editor.post("/api/v1/training-jobs", json=body(tuning=tuning)), 201)
    job_id = job["job_id"]
    logs = f"/api/v1/training-jobs/{job_id}/logs"
    import time

    deadline = time.monotonic() + 120
    while not any(i["line"].startswith("tuning:") for i in ok(acme.viewer.get(logs))["items"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(3)  # trials are running on Ray now
    asked = ok(acme.editor.post(f"/api/v1/training-jobs/{job_id}/cancel"))
    assert asked["status"] == "running" and asked["cancel_requested"]
    done = wait_for_job(acme.viewer, job_id, ("succeeded", "failed", "cancelled"), timeout=120)
    assert done["status"] == "cancelled", done
    assert ok(acme.viewer.get(f"/api/v1/runs/{done['parent_run_id']}"))["status"] == "KILLED"
    events = job_events(services, acme.tenant_id, job_id)
    assert events[-1]["data"]["outcome"]["status"] == "cancelled"
    assert ok(acme.viewer.get("/api/v1/models"))["items"] == []
    # The trials that ran were logged as they reported, and end KILLED with the job.
    runs = ok(acme.viewer.get(f"/api/v1/experiments/{run_experiment(acme, done)}/runs"))["items"]
    trials = [r for r in runs if r["tags"].get("mlflow.parentRunId") == done["parent_run_id"]]
    assert trials and all(r["status"] in ("KILLED", "FINISHED") for r in trials)
    assert any(r["status"] == "KILLED" and r["tags"]["trial_state"] == "CANCELLED" for r in trials)


def test_the_cli_submits_follows_and_reads_a_job(acme, services, settings, monkeypatch, tmp_path):
    from matih_ml.cli import app

    for name, value in {
        "MATIH_DATA_DIR": str(settings.data_dir),
        "MATIH_TRAINING_WORKERS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    write_table(services, acme.tenant_id)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(body(register=False)))
    runner = CliRunner()

    submitted = runner.invoke(
        app,
        ["jobs", "submit", "--local", "-t", acme.tenant_id, "-f", str(spec), "--wait", "--json"],
    )
    assert submitted.exit_code == 0, (submitted.output, submitted.stderr)
    job = json.loads(submitted.stdout)
    assert job["status"] == "succeeded" and job["outcome"] == "not_registered"
    assert job["reason"].startswith("not registered: register is false")

    status = runner.invoke(
        app, ["jobs", "status", "--local", "-t", acme.tenant_id, job["job_id"], "--json"]
    )
    assert json.loads(status.stdout)["job_id"] == job["job_id"]
    logs = runner.invoke(
        app, ["jobs", "logs", "--local", "-t", acme.tenant_id, job["job_id"], "--json"]
    )
    # --local is an operator of the tenant: the job names them as its author.
    assert json.loads(logs.stdout)[0]["line"].startswith("queued by operator:")
    listed = runner.invoke(app, ["jobs", "list", "--local", "-t", acme.tenant_id, "--json"])
    assert [j["job_id"] for j in json.loads(listed.stdout)] == [job["job_id"]]
    again = runner.invoke(
        app, ["jobs", "cancel", "--local", "-t", acme.tenant_id, job["job_id"], "--json"]
    )
    assert again.exit_code == 1 and json.loads(again.stdout)["error"]["code"] == "CONFLICT"
    other = runner.invoke(
        app, ["jobs", "status", "--local", "-t", "nobody-else", job["job_id"], "--json"]
    )
    assert other.exit_code == 1 and json.loads(other.stdout)["error"]["code"] == "NOT_FOUND"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(body(resources={"num_workers": 0})))
    refused = runner.invoke(
        app, ["jobs", "submit", "--local", "-t", acme.tenant_id, "-f", str(bad), "--json"]
    )
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["error"]["details"]["field"] == "resources.num_workers"
