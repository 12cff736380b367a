"""The batch jobs door in process (``LocalClient.batch``): the same checks and answers as
the REST routes (which call it), bound to the caller's tenant and roles; then the CLI
with ``--local``, a job run by an executor on a local Ray, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from conftest import open_production_gate
from matih_ml.auth.principal import Principal, Role
from matih_ml.batch_spec import validate_batch
from matih_ml.contracts.schemas import BatchJobRead, LogPage, Page
from matih_ml.errors import ForbiddenError, NotFoundError, ValidationError
from matih_ml.local import LocalClient
from matih_ml.store.models import TrainingJobRow

FEATURES = ["f0", "f1", "f2", "f3"]
TRAINING_JOB = {
    "name": "nightly",
    "model_name": "churn",
    "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    "data": {"kind": "table", "path": "missing.csv", "target": "label"},
    "evaluation": {"primary_metric": "accuracy"},
    "register": False,
}


def body(**overrides) -> dict:
    return {
        "name": "scores",
        "model": "churn",
        "input": {"path": "in.parquet"},
        "key_columns": ["id"],
        "output": {"path": "out/scores.parquet"},
        "batch_size": 50,
        **overrides,
    }


def door(services, tenant: str, *roles: Role, subject: str = "k") -> LocalClient:
    who = Principal(
        tenant_id=tenant, subject=subject, roles=frozenset(roles), via="test", owner=subject
    )
    return LocalClient(services, who)


@pytest.fixture
def with_model(services, tenant, sk_model) -> str:
    """The tenant, with ``churn`` v1 registered and in production."""
    open_production_gate(services.lifecycle, tenant)
    services.registry.register_model_version(tenant, "churn", sk_model, "sklearn", {}, {})
    for stage in ("staging", "production"):
        services.lifecycle.transition_stage(tenant, "churn", "1", stage)
    return tenant


def test_submit_read_list_cancel_and_logs(services, with_model) -> None:
    editor = door(services, with_model, Role.EDITOR, subject="ed").batch
    viewer = door(services, with_model, Role.VIEWER, subject="vi").batch

    job = editor.submit(body())
    assert isinstance(job, BatchJobRead)
    assert job.kind == "batch" and job.status == "queued" and job.created_by == "ed"
    assert job.version is None and job.progress is None
    # A spec object goes as a body would: the same checks, the same job.
    again = editor.submit(validate_batch(body(name="typed")))
    assert again.spec["name"] == "typed" and again.spec["stage"] == "production"
    assert viewer.get(job.job_id) == job
    page = viewer.list(status="queued", limit=1)
    assert isinstance(page, Page) and len(page.items) == 1 and page.next_page_token
    assert {j.job_id for j in viewer.all(status="queued")} == {job.job_id, again.job_id}
    with pytest.raises(ForbiddenError):
        viewer.submit(body())
    with pytest.raises(ForbiddenError):
        viewer.cancel(job.job_id)
    assert editor.cancel(job.job_id).status == "cancelled"
    assert editor.cancel(job.job_id).status == "cancelled"  # again: nothing to do
    logs = viewer.logs(job.job_id)
    assert isinstance(logs, LogPage) and logs.items[0].line == "queued by ed"
    assert viewer.logs(job.job_id, after=logs.next_after).items == []
    assert viewer.wait(job.job_id, timeout=5).status == "cancelled"  # finished: at once
    editor.cancel(again.job_id)


def test_kinds_and_tenants_stay_apart(services, with_model, other_tenant) -> None:
    ml = door(services, with_model, Role.ADMIN)
    batch = ml.batch.submit(body()).job_id
    training = ml.jobs.submit(TRAINING_JOB).job_id
    for call in (ml.batch.get, ml.batch.cancel, ml.batch.logs):
        with pytest.raises(NotFoundError):
            call(training)
    for call in (ml.jobs.get, ml.jobs.cancel, ml.jobs.logs):
        with pytest.raises(NotFoundError):
            call(batch)
    assert [j.job_id for j in ml.batch.all()] == [batch]
    assert [j.job_id for j in ml.jobs.all()] == [training]

    other = door(services, other_tenant, Role.ADMIN).batch
    for call in (other.get, other.cancel, other.logs):
        with pytest.raises(NotFoundError):
            call(batch)
    assert other.list().items == []
    with pytest.raises(NotFoundError):  # the first tenant's model is not the other's
        other.submit(body())
    assert ml.batch.get(batch).status == "queued"
    ml.batch.cancel(batch)
    ml.jobs.cancel(training)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"input": {"path": "../elsewhere/in.parquet"}}, "input.path"),
        ({"output": {"path": "s3://bucket/out.parquet"}}, "output.path"),
        ({"alias": "champion", "stage": "staging"}, "alias"),
    ],
)
def test_a_bad_job_names_its_field_in_process_too(services, with_model, patch, field) -> None:
    ml = door(services, with_model, Role.EDITOR).batch
    with pytest.raises(ValidationError) as refused:
        ml.submit(body(**patch))
    assert (refused.value.details or {}).get("field") == field, refused.value.message
    assert ml.list().items == []


# ------------------------------------------------------------------ the CLI, end to end


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


def test_the_cli_submits_waits_and_reads_a_batch_job(
    services, settings, with_model, sk_model, executor, monkeypatch, tmp_path
) -> None:
    from matih_ml.cli import app

    monkeypatch.setenv("MATIH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MATIH_TRAINING_WORKERS", "0")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    tenant = with_model
    rows = 300
    x = np.random.default_rng(3).normal(size=(rows, len(FEATURES)))
    root = Path(services.settings.tenant_data_root(tenant))
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(x, columns=FEATURES).assign(id=np.arange(rows)).to_parquet(root / "in.parquet")
    spec = tmp_path / "batch.json"
    spec.write_text(json.dumps(body()))
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, ["batch", *args, "--local", "-t", tenant])

    submitted = cli("submit", "-f", str(spec), "--wait", "--json")
    assert submitted.exit_code == 0, (submitted.output, submitted.stderr)
    job = json.loads(submitted.stdout)
    assert job["status"] == "succeeded" and job["version"] == "1", job
    assert job["progress"] == {"rows_done": rows, "rows_total": rows}
    out = pd.read_parquet(root / "out" / "scores.parquet").sort_values("id")
    assert out["prediction"].tolist() == sk_model.predict(x).tolist()

    status = cli("status", job["job_id"], "--json")
    assert json.loads(status.stdout)["result"]["rows"] == rows
    listed = json.loads(cli("list", "--json").stdout)
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    logs = json.loads(cli("logs", job["job_id"], "--follow", "--json").stdout)
    # --local is an operator of the tenant: the job names them as its author.
    assert logs[0]["line"].startswith("queued by operator:") and len(logs) > 1
    again = cli("cancel", job["job_id"], "--json")
    assert again.exit_code == 1 and json.loads(again.stdout)["error"]["code"] == "CONFLICT"
    other = runner.invoke(
        app, ["batch", "status", job["job_id"], "--local", "-t", "nobody-else", "--json"]
    )
    assert other.exit_code == 1 and json.loads(other.stdout)["error"]["code"] == "NOT_FOUND"

    # A job that fails (no such input) is exit 1 with --wait; the table names its reason.
    spec.write_text(json.dumps(body(input={"path": "missing.parquet"})))
    failed = cli("submit", "-f", str(spec), "--wait")
    assert failed.exit_code == 1, failed.output
    assert "failed" in failed.stdout

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(body(batch_size=0)))
    refused = cli("submit", "-f", str(bad), "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["error"]["details"]["field"] == "batch_size"
