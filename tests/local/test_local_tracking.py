"""The experiments and runs doors in process: the same runs, metrics and artifacts as the
REST routes (which call them), bound to the caller's tenant and roles."""

from __future__ import annotations

import numpy as np
import pytest

from matih_ml.auth.principal import Principal, Role
from matih_ml.contracts.schemas import (
    ArtifactRead,
    ComparisonRow,
    DownsampledRead,
    ExperimentRead,
    LogBatchResult,
    MetricIn,
    MetricPointRead,
    Page,
    RunRead,
)
from matih_ml.errors import ForbiddenError, NotFoundError, ValidationError
from matih_ml.local import LocalClient


def door(services, tenant: str, role: Role, owner: str = "alice") -> LocalClient:
    who = Principal(
        tenant_id=tenant,
        subject=f"{role.value}-key-of-{owner}",
        roles=frozenset({role}),
        via="test",
        owner=owner,
    )
    return LocalClient(services, who)


def test_a_run_is_created_logged_read_and_ended(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR)
    viewer = door(services, tenant, Role.VIEWER)

    run = editor.runs.create("exp-local", run_name="r1", tags={"k": "v"}, job_id="job-1")
    assert isinstance(run, RunRead)
    assert run.status == "RUNNING" and run.run_name == "r1"
    assert run.tags["k"] == "v" and run.tags["matih.job_id"] == "job-1"
    assert run.tags["matih.user_id"] == "editor-key-of-alice"
    assert run.tags["matih.tenant_id"] == tenant
    assert run.artifact_uri.endswith(f"/runs/{run.run_id}/artifacts")

    written = editor.runs.log_batch(
        run.run_id,
        metrics=[
            MetricIn(key="loss", value=0.5, step=0),
            {"key": "loss", "value": 0.25, "step": 1},
            {"key": "acc", "value": 0.9},
        ],
        params={"lr": 0.1, "deep": True},
        tags={"phase": "fit"},
    )
    assert written == LogBatchResult(metrics_written=3)
    # Columns as numpy arrays, as the HTTP client takes them.
    steps = np.arange(2, 1202)
    columns = editor.runs.log_metrics(
        run.run_id, ["loss"] * len(steps), 1.0 / (steps + 1.0), steps=steps
    )
    assert columns.metrics_written == 1200

    got = viewer.runs.get(run.run_id)
    assert got.params == {"lr": "0.1", "deep": "True"} and got.tags["phase"] == "fit"
    assert got.metrics["acc"] == 0.9

    page = viewer.runs.metric_history(run.run_id, "loss", max_results=1000)
    assert isinstance(page, Page) and len(page.items) == 1000 and page.next_page_token
    assert isinstance(page.items[0], MetricPointRead)
    assert [p.step for p in page.items[:2]] == [0, 1] and page.items[1].value == 0.25
    assert [p.step for p in viewer.runs.all_points(run.run_id, "loss")] == list(range(1202))

    chart = viewer.runs.downsampled_history(run.run_id, "loss", 10)
    assert isinstance(chart, DownsampledRead)
    assert chart.key == "loss" and chart.total == 1202 and 1 <= len(chart.buckets) <= 10
    assert chart.first is not None and chart.first.step == 0 and chart.first.value == 0.5
    assert chart.last is not None and chart.last.step == 1201

    ended = editor.runs.end(run.run_id, "FAILED")
    assert ended.status == "FAILED" and ended.end_time is not None
    assert viewer.runs.get(run.run_id).status == "FAILED"


def test_experiments_list_their_runs_and_compare_them(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR)
    viewer = door(services, tenant, Role.VIEWER)
    a = editor.runs.create("exp-compare", run_name="a")
    b = editor.runs.create("exp-compare", run_name="b")
    editor.runs.log_batch(a.run_id, metrics=[{"key": "acc", "value": 0.8}], params={"lr": 0.1})
    editor.runs.log_batch(
        b.run_id, metrics=[{"key": "acc", "value": 0.9}], params={"lr": 0.2, "seed": 1}
    )

    experiments = viewer.experiments.list()
    assert all(isinstance(e, ExperimentRead) for e in experiments.items)
    (exp,) = [e for e in experiments.items if e.name == "exp-compare"]
    assert exp.experiment_id == a.experiment_id == b.experiment_id
    assert exp.runs_url.endswith(f"/experiments/{exp.experiment_id}/runs")
    assert viewer.experiments.get(exp.experiment_id) == exp
    assert {e.name for e in viewer.experiments.all()} == {e.name for e in experiments.items}

    runs = viewer.experiments.list_runs(exp.experiment_id, max_results=1)
    assert len(runs.items) == 1 and runs.next_page_token
    assert runs.items[0].run_id == b.run_id  # newest first
    assert [r.run_id for r in viewer.experiments.all_runs(exp.experiment_id)] == [
        b.run_id,
        a.run_id,
    ]

    rows = viewer.experiments.compare([a.run_id, b.run_id], metrics=["acc"])
    assert all(isinstance(r, ComparisonRow) for r in rows)
    assert [(r.run_id, r.metrics["acc"]) for r in rows] == [(a.run_id, 0.8), (b.run_id, 0.9)]
    assert rows[1].parameters == {"lr": "0.2", "seed": "1"}
    differing = viewer.experiments.compare([a.run_id, b.run_id], only_differences=True)
    assert set(differing[1].parameters) == {"lr", "seed"}


def test_artifacts_go_up_and_come_back_as_bytes(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR)
    viewer = door(services, tenant, Role.VIEWER)
    run = editor.runs.create("exp-artifacts")

    stored = editor.runs.upload_artifact(run.run_id, "plots/loss.csv", b"step,loss\n0,1.0\n")
    assert stored == ArtifactRead(path="plots/loss.csv", is_dir=False, file_size=16)
    top = viewer.runs.list_artifacts(run.run_id)
    assert [(f.path, f.is_dir) for f in top] == [("plots", True)]
    inside = viewer.runs.list_artifacts(run.run_id, "plots")
    assert [(f.path, f.file_size) for f in inside] == [("plots/loss.csv", 16)]
    assert viewer.runs.read_artifact(run.run_id, "plots/loss.csv") == b"step,loss\n0,1.0\n"
    with pytest.raises(ValidationError):
        viewer.runs.read_artifact(run.run_id, "plots")  # a folder is listed, not read
    with pytest.raises(NotFoundError):
        viewer.runs.read_artifact(run.run_id, "plots/none.csv")


def test_a_viewer_cannot_write_and_nothing_changes(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR)
    viewer = door(services, tenant, Role.VIEWER)
    run = editor.runs.create("exp-viewer")
    before = viewer.experiments.list().items

    with pytest.raises(ForbiddenError):
        viewer.runs.create("exp-viewer-new")
    with pytest.raises(ForbiddenError):
        viewer.runs.log_batch(run.run_id, metrics=[{"key": "loss", "value": 1.0}])
    with pytest.raises(ForbiddenError):
        viewer.runs.log_metrics(run.run_id, ["loss"], [1.0])
    with pytest.raises(ForbiddenError):
        viewer.runs.end(run.run_id)
    with pytest.raises(ForbiddenError):
        viewer.runs.upload_artifact(run.run_id, "x.txt", b"x")

    assert viewer.experiments.list().items == before
    got = viewer.runs.get(run.run_id)
    assert got.status == "RUNNING" and got.metrics == {}
    assert viewer.runs.metric_history(run.run_id, "loss").items == []
    assert viewer.runs.list_artifacts(run.run_id) == []


def test_another_tenant_sees_none_of_it(services, tenant, other_tenant) -> None:
    editor = door(services, tenant, Role.EDITOR)
    run = editor.runs.create("exp-private")
    editor.runs.log_batch(run.run_id, metrics=[{"key": "loss", "value": 1.0}])
    editor.runs.upload_artifact(run.run_id, "secret.txt", b"s")
    other = door(services, other_tenant, Role.ADMIN, owner="mallory")

    assert "exp-private" not in {e.name for e in other.experiments.all()}
    with pytest.raises(NotFoundError):
        other.experiments.get(run.experiment_id)
    with pytest.raises(NotFoundError):
        other.experiments.list_runs(run.experiment_id)
    with pytest.raises(NotFoundError):
        other.experiments.compare([run.run_id])
    with pytest.raises(NotFoundError):
        other.runs.get(run.run_id)
    with pytest.raises(NotFoundError):
        other.runs.metric_history(run.run_id, "loss")
    with pytest.raises(NotFoundError):
        other.runs.downsampled_history(run.run_id, "loss", 10)
    with pytest.raises(NotFoundError):
        other.runs.list_artifacts(run.run_id)
    with pytest.raises(NotFoundError):
        other.runs.read_artifact(run.run_id, "secret.txt")
    with pytest.raises(NotFoundError):
        other.runs.log_batch(run.run_id, metrics=[{"key": "loss", "value": 2.0}])
    with pytest.raises(NotFoundError):
        other.runs.log_metrics(run.run_id, ["loss"], [2.0])
    with pytest.raises(NotFoundError):
        other.runs.end(run.run_id)
    with pytest.raises(NotFoundError):
        other.runs.upload_artifact(run.run_id, "planted.txt", b"p")

    viewer = door(services, tenant, Role.VIEWER)
    assert [p.value for p in viewer.runs.all_points(run.run_id, "loss")] == [1.0]
    assert viewer.runs.get(run.run_id).status == "RUNNING"
    assert [f.path for f in viewer.runs.list_artifacts(run.run_id)] == ["secret.txt"]


def test_bad_input_is_refused_before_anything_is_written(services, tenant) -> None:
    editor = door(services, tenant, Role.EDITOR)
    run = editor.runs.create("exp-bad")

    # A bad point among good ones: the batch writes nothing (true is not a number).
    with pytest.raises(ValidationError, match="value"):
        editor.runs.log_batch(
            run.run_id,
            metrics=[{"key": "loss", "value": 1.0}, {"key": "loss", "value": True}],
        )
    with pytest.raises(ValidationError):
        editor.runs.log_metrics(run.run_id, ["loss", "loss"], [1.0, float("nan")])
    with pytest.raises(ValidationError):
        editor.runs.log_metrics(run.run_id, ["loss"], [1.0, 2.0])
    assert editor.runs.metric_history(run.run_id, "loss").items == []

    # The route's body type holds job_id's limit; the door holds it too.
    with pytest.raises(ValidationError, match="job_id"):
        editor.runs.create("exp-bad", job_id="j" * 257)
    with pytest.raises(ValidationError):
        editor.runs.end(run.run_id, "DONE")  # type: ignore[arg-type]
    assert editor.runs.get(run.run_id).status == "RUNNING"
