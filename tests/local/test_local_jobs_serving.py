"""The jobs and serving doors in process: the same checks and answers as the REST routes
(which call them; the predict route scores with the same service object), bound to the
caller's tenant and roles. No executor runs here (the session's settings start none), so
jobs stay queued."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from matih_ml.auth.principal import Principal, Role
from matih_ml.contracts.schemas import (
    EvidenceCreate,
    EvidenceRead,
    JobRead,
    LogPage,
    MonitoringRead,
    Page,
    PredictionRead,
    ServingConfigRead,
    TrafficSummaryRead,
)
from matih_ml.errors import (
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from matih_ml.job_spec import validate_job
from matih_ml.local import LocalClient

FEATURES = ["f0", "f1", "f2", "f3"]
JOB = {
    "name": "nightly",
    "model_name": "churn",
    "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    "data": {"kind": "table", "path": "missing.csv", "target": "label"},
    "evaluation": {"primary_metric": "accuracy"},
    "register": False,
}


def door(services, tenant: str, *roles: Role, subject: str = "k") -> LocalClient:
    who = Principal(
        tenant_id=tenant, subject=subject, roles=frozenset(roles), via="test", owner=subject
    )
    return LocalClient(services, who)


# ------------------------------------------------------------------ jobs


def test_jobs_submit_read_list_cancel_and_logs(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR, subject="ed").jobs
    viewer = door(services, tenant, Role.VIEWER, subject="vi").jobs

    job = editor.submit(JOB)
    assert isinstance(job, JobRead)
    assert (job.status, job.created_by, job.name) == ("queued", "ed", "nightly")
    assert job.spec["evaluation"]["higher_is_better"] is True  # filled in by validation
    assert viewer.get(job.job_id) == job
    listed = viewer.list(status="queued")
    assert isinstance(listed, Page) and [j.job_id for j in listed.items] == [job.job_id]
    assert viewer.list(status="failed").items == []

    cancelled = editor.cancel(job.job_id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    logs = viewer.logs(job.job_id)
    assert isinstance(logs, LogPage)
    assert [i.line for i in logs.items] == ["queued by ed", "cancelled by ed before it started"]
    assert logs.next_after == logs.items[-1].seq
    assert viewer.logs(job.job_id, after=logs.next_after) == LogPage(
        items=[], next_after=logs.next_after
    )
    # The walk helpers, on the same methods: the job has ended, so neither waits.
    assert [line.line for line in viewer.follow(job.job_id)] == [i.line for i in logs.items]
    assert viewer.wait(job.job_id, timeout=5).status == "cancelled"
    assert [j.job_id for j in viewer.all()] == [job.job_id]


def test_a_job_spec_object_is_validated_as_a_body_is(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR).jobs
    spec = validate_job(JOB)
    job = editor.submit(spec)
    assert job.model_name == "churn" and job.spec["trainer"]["kind"] == "sklearn"
    with pytest.raises(ValidationError) as bad:
        editor.submit({**JOB, "resources": {"num_workers": 0}})
    assert bad.value.details["field"] == "resources.num_workers"
    with pytest.raises(ValidationError):
        editor.submit({**JOB, "unknown": 1})
    assert [j.job_id for j in editor.list().items] == [job.job_id]


def test_pages_of_jobs(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR).jobs
    for _ in range(3):  # queued then cancelled, to stay under the limit
        editor.cancel(editor.submit(JOB).job_id)
    first = editor.list(limit=2)
    assert len(first.items) == 2 and first.next_page_token == "2"
    rest = editor.list(limit=2, page_token=first.next_page_token)
    assert len(rest.items) == 1 and rest.next_page_token is None
    assert {j.job_id for j in first.items + rest.items} == {j.job_id for j in editor.all()}
    with pytest.raises(ValidationError):
        editor.list(page_token="not-a-number")
    with pytest.raises(ValidationError):
        editor.list(limit=0)
    with pytest.raises(ValidationError):
        editor.logs(first.items[0].job_id, limit=0)


def test_a_viewer_reads_jobs_but_neither_submits_nor_cancels(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR).jobs
    viewer = door(services, tenant, Role.VIEWER).jobs
    job = editor.submit(JOB)
    with pytest.raises(ForbiddenError):
        viewer.submit(JOB)
    with pytest.raises(ForbiddenError):
        viewer.cancel(job.job_id)
    assert viewer.get(job.job_id).status == "queued"
    assert [j.job_id for j in viewer.list().items] == [job.job_id]


def test_another_tenants_jobs_are_not_found(services, tenant, other_tenant) -> None:
    job = door(services, tenant, Role.EDITOR).jobs.submit(JOB)
    other = door(services, other_tenant, Role.ADMIN).jobs
    assert other.list().items == []
    for call in (other.get, other.cancel, other.logs):
        with pytest.raises(NotFoundError):
            call(job.job_id)
    assert door(services, tenant, Role.VIEWER).jobs.get(job.job_id).status == "queued"


# ------------------------------------------------------------------ serving


def _frame(seed: int, n: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(0.0, 1.0, (n, 4)), columns=FEATURES)


@pytest.fixture
def served(services, tenant) -> str:
    """``churn``: v1 in production, v2 in development (a column signature)."""
    x = _frame(0, 200)
    model = LogisticRegression().fit(x, (x.f0 > 0).astype(int))
    for _ in range(2):
        services.registry.register_model_version(
            tenant, "churn", model, "sklearn", {}, {}, input_example=x.iloc[:50]
        )
    services.lifecycle.transition_stage(tenant, "churn", "1", "staging")
    services.lifecycle.transition_stage(
        tenant, "churn", "1", "production", force=True, reason="test", actor="admin"
    )
    return tenant


def _records(n: int, seed: int = 1) -> list[dict]:
    return _frame(seed, n).to_dict(orient="records")


def test_the_door_scores_with_the_services_prediction_service(services, served) -> None:
    from matih_ml.api.app import create_app
    from matih_ml.api.routes.serving import get_serving_of

    viewer = door(services, served, Role.VIEWER).serving
    rows = _records(5)
    got = viewer.predict("churn", records=rows)
    assert isinstance(got, PredictionRead)
    assert (got.model_id, got.version, got.target) == ("churn", "1", "production")
    assert len(got.predictions) == 5
    # One PredictionService: the one the door loaded the version into is the app's.
    assert (served, "churn", "1") in services.serving.cache.cached()
    assert get_serving_of(create_app(services=services)) is services.serving
    # A batch scores the same rows the same way, in one version.
    batch = viewer.predict_batch("churn", records=rows, stage="production")
    assert batch.predictions == got.predictions and batch.version == "1"
    # Rows as a tuple (or a numpy array) are taken as the client takes them.
    assert viewer.predict("churn", records=tuple(rows)).predictions == got.predictions


def test_predict_checks_the_rows_and_who_may_load_a_version(services, served) -> None:
    viewer = door(services, served, Role.VIEWER).serving
    editor = door(services, served, Role.EDITOR).serving
    with pytest.raises(PayloadTooLargeError):
        viewer.predict("churn", records=_records(1001))
    with pytest.raises(ValidationError):
        viewer.predict_batch("churn", records=[])
    with pytest.raises(ValidationError):
        viewer.predict("churn")  # neither records nor inputs
    with pytest.raises(ValidationError):
        viewer.predict("churn", records=_records(1), stage="production", version=1)
    # v2 is in development: an editor's work in progress, not a reader's.
    with pytest.raises(ForbiddenError) as refused:
        viewer.predict("churn", records=_records(2), version=2)
    assert refused.value.details["stage"] == "development"
    with pytest.raises(ForbiddenError):
        viewer.monitoring("churn", version="2")
    assert editor.predict("churn", records=_records(2), version=2).version == "2"


def test_traffic_modes_evidence_and_monitoring(services, served) -> None:
    viewer = door(services, served, Role.VIEWER).serving
    editor = door(services, served, Role.EDITOR, subject="ed").serving
    off = viewer.get_config("churn")
    assert isinstance(off, ServingConfigRead) and (off.model_id, off.mode) == ("churn", "off")
    with pytest.raises(ForbiddenError):
        viewer.set_config("churn", "shadow")
    assert viewer.get_config("churn").mode == "off"
    with pytest.raises(ValidationError):
        editor.set_config("churn", "ab", ab_share=2.0)
    shadow = editor.set_config("churn", "shadow")
    assert (shadow.mode, shadow.updated_by) == ("shadow", "ed")
    assert viewer.get_config("churn").mode == "shadow"

    # Staging: none yet (v1 went on to production), so there is no summary.
    with pytest.raises(NotFoundError):
        viewer.summary("churn")
    services.lifecycle.transition_stage(served, "churn", "2", "staging")
    viewer.predict("churn", records=_records(3))
    summary = viewer.summary("churn", mode="shadow")
    assert isinstance(summary, TrafficSummaryRead) and summary.staging_version == "2"
    with pytest.raises(ValidationError):
        viewer.summary("churn", mode="nope")  # type: ignore[arg-type]

    asked = EvidenceCreate(kind="shadow", min_samples=10_000)
    with pytest.raises(ForbiddenError):
        viewer.record_evidence("churn", asked)
    evidence = editor.record_evidence("churn", asked)
    assert isinstance(evidence, EvidenceRead)
    assert not evidence.evaluation.passed and evidence.reasons
    assert evidence.evaluation.version == "2"

    figures = viewer.monitoring("churn")
    assert isinstance(figures, MonitoringRead)
    assert figures.version == "1" and figures.requests >= 1


def test_another_tenants_model_is_not_found_for_serving(services, served, other_tenant) -> None:
    other = door(services, other_tenant, Role.ADMIN).serving
    with pytest.raises(NotFoundError):
        other.predict("churn", records=_records(1))
    with pytest.raises(NotFoundError):
        other.predict_batch("churn", records=_records(1))
    with pytest.raises(NotFoundError):
        other.get_config("churn")
    with pytest.raises(NotFoundError):
        other.set_config("churn", "shadow")
    with pytest.raises(NotFoundError):
        other.monitoring("churn")
    assert door(services, served, Role.VIEWER).serving.get_config("churn").mode == "off"


# ------------------------------------------------------------------ the CLI, one path


def test_the_cli_jobs_commands_call_the_door_with_local(
    services, settings, tenant, other_tenant, monkeypatch, tmp_path
) -> None:
    import json

    from typer.testing import CliRunner

    from matih_ml.cli import app

    monkeypatch.setenv("MATIH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MATIH_TRAINING_WORKERS", "0")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(JOB))
    runner = CliRunner()

    def cli(*args: str, tenant_id: str = tenant):
        return runner.invoke(app, ["jobs", *args, "--local", "-t", tenant_id, "--json"])

    submitted = cli("submit", "-f", str(spec))
    assert submitted.exit_code == 0, (submitted.output, submitted.stderr)
    job = json.loads(submitted.stdout)
    # --local is an operator of the tenant: the door records the operator's name.
    assert job["status"] == "queued" and job["created_by"].startswith("operator:")
    assert json.loads(cli("status", job["job_id"]).stdout)["job_id"] == job["job_id"]
    assert [j["job_id"] for j in json.loads(cli("list").stdout)] == [job["job_id"]]
    cancelled = cli("cancel", job["job_id"])
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    lines = [i["line"] for i in json.loads(cli("logs", job["job_id"]).stdout)]
    assert lines[0] == f"queued by {job['created_by']}" and len(lines) == 2
    # Both doors' rules: another tenant's job is not found; a bad spec names its field.
    other = cli("status", job["job_id"], tenant_id=other_tenant)
    assert other.exit_code == 1 and json.loads(other.stdout)["error"]["code"] == "NOT_FOUND"
    spec.write_text(json.dumps({**JOB, "resources": {"num_workers": 0}}))
    refused = cli("submit", "-f", str(spec))
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["error"]["details"]["field"] == "resources.num_workers"
    assert door(services, tenant, Role.VIEWER).jobs.list().items[0].job_id == job["job_id"]


def test_the_shared_prediction_service_still_scores_shadows_after_an_app_stopped_it(services):
    # One PredictionService per Services: an app's lifespan stopping it (its shadow
    # pool shut down) must not leave it refusing work for whoever still holds it.
    import dataclasses

    own = dataclasses.replace(services)
    predictor = own.serving
    predictor.start()
    predictor.stop()
    # What a shadow score or a traffic record is handed to after the stop:
    assert predictor._pool.submit(lambda: 41 + 1).result(timeout=10) == 42
    predictor.stop()
