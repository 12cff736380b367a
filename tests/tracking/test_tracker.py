import json
from pathlib import Path

import pytest
from mlflow.entities import ViewType

from matih_ml.backend import MlflowBackend
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.tenancy import tenant_scope
from matih_ml.tracking import ActiveRun, ExperimentTracker, RunConfig, get_experiment_tracker


def _run(backend: MlflowBackend, tenant: str, run_id: str):
    with tenant_scope(tenant):
        return backend.client.get_run(run_id)


def test_start_run_tags_the_run_and_finishes_it(tracker, backend, tenant) -> None:
    config = RunConfig(
        run_name="training-run-1", tenant_id=tenant, user_id="alice@acme.com", job_id="job-123"
    )
    with tracker.start_run(experiment_name="my-experiment", run_config=config) as run:
        assert isinstance(run, ActiveRun)
        run_id = run.run_id
        assert run.artifact_uri.startswith(f"{backend.settings.artifact_root}/{tenant}/")
        assert _run(backend, tenant, run_id).info.status == "RUNNING"
    stored = _run(backend, tenant, run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name == "training-run-1"
    assert stored.data.tags["matih.tenant_id"] == tenant
    assert stored.data.tags["matih.user_id"] == "alice@acme.com"
    assert stored.data.tags["matih.job_id"] == "job-123"
    with tenant_scope(tenant):
        exp = backend.client.get_experiment(run.experiment_id)
    assert exp.name == "my-experiment"


def test_start_run_marks_failed_and_reraises(tracker, backend, tenant) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), tracker.start_run("exp", RunConfig(tenant_id=tenant)) as run:
        run.log_metric("loss", 1.0)
        raise Boom
    assert _run(backend, tenant, run.run_id).info.status == "FAILED"


def test_fluent_methods_chain_and_write(tracker, backend, tenant, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with tracker.start_run("exp", RunConfig(tenant_id=tenant)) as run:
        same = (
            run.log_params({"learning_rate": 0.01, "epochs": 100, "layers": [1, 2]})
            .log_metrics({"loss": 0.5, "acc": 0.7}, step=3)
            .log_metric("loss", 0.25, step=4)
            .log_artifact(f)
            .log_artifact(f, artifact_path="sub/dir")
            .log_dict({"a": 1}, "config/params.json")
            .set_tag("status", "complete")
        )
        assert same is run
        assert run.get_elapsed_time() > 0
    stored = _run(backend, tenant, run.run_id)
    assert stored.data.params == {"learning_rate": "0.01", "epochs": "100", "layers": "[1, 2]"}
    assert stored.data.metrics == {"loss": 0.25, "acc": 0.7}
    assert stored.data.tags["status"] == "complete"
    with tenant_scope(tenant):
        history = backend.client.get_metric_history(run.run_id, "loss")
        paths = {a.path for a in backend.client.list_artifacts(run.run_id)}
        sub = {a.path for a in backend.client.list_artifacts(run.run_id, "sub/dir")}
        local = backend.client.download_artifacts(run.run_id, "config/params.json", str(tmp_path))
    assert [(m.step, m.value) for m in history] == [(3, 0.5), (4, 0.25)]
    assert {"notes.txt", "config", "sub"} <= paths
    assert sub == {"sub/dir/notes.txt"}
    assert json.loads(Path(local).read_text()) == {"a": 1}


def test_log_artifact_of_a_folder(tracker, backend, tenant, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    with tracker.start_run("exp", RunConfig(tenant_id=tenant)) as run:
        run.log_artifact(tmp_path / "d", "folder")
    with tenant_scope(tenant):
        assert [a.path for a in backend.client.list_artifacts(run.run_id, "folder")] == [
            "folder/a.txt"
        ]


def test_same_experiment_name_in_two_tenants_is_two_experiments(
    tracker, backend, tenant, other_tenant
) -> None:
    with tracker.start_run("shared-name", RunConfig(tenant_id=tenant)) as a:
        pass
    with tracker.start_run("shared-name", RunConfig(tenant_id=other_tenant)) as b:
        pass
    assert a.experiment_id != b.experiment_id
    for t, run in ((tenant, a), (other_tenant, b)):
        with tenant_scope(t):
            exps = backend.client.search_experiments(view_type=ViewType.ALL)
            assert [e.experiment_id for e in exps] == [run.experiment_id]


def test_run_of_another_tenant_is_not_found(tracker, backend, tenant, other_tenant) -> None:
    with tracker.start_run("exp", RunConfig(tenant_id=tenant)) as run:
        pass
    from matih_ml.mlflow_errors import translated

    with pytest.raises(NotFoundError), tenant_scope(other_tenant), translated("run"):
        backend.client.get_run(run.run_id)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda r: r.log_metric("bad key!", 1.0), "metric key"),
        (lambda r: r.log_metric("../escape", 1.0), "metric key"),
        (lambda r: r.log_metric("loss", "abc"), "must be a number"),
        (lambda r: r.log_metric("loss", None), "must be a number"),
        (lambda r: r.log_metric("loss", True), "must be a number"),
        (lambda r: r.log_metric("loss", float("nan")), "finite"),
        (lambda r: r.log_metric("loss", float("inf")), "finite"),
        (lambda r: r.log_metric("loss", 1.0, step=-1), "step"),
        (lambda r: r.log_metric("loss", 1.0, step=2**63), "step"),
        (lambda r: r.log_metric("loss", 1.0, step=1.5), "step"),
        (lambda r: r.log_metrics({"ok": 1.0, "bad": "x"}), "must be a number"),
        (lambda r: r.log_params({"p": "x" * 6001}), "limit"),
        (lambda r: r.log_params({"bad key!": 1}), "param key"),
        (lambda r: r.set_tag("matih.tenant_id", "evil"), "reserved"),
        (lambda r: r.log_artifact("/no/such/file"), "No such file"),
        (lambda r: r.log_dict({"a": 1}, "../out.json"), "relative"),
        (lambda r: r.log_dict({"a": object()}, "x.json"), "JSON"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(tracker, backend, tenant, call, match):
    with (
        tracker.start_run("exp", RunConfig(tenant_id=tenant)) as run,
        pytest.raises(ValidationError, match=match),
    ):
        call(run)
    stored = _run(backend, tenant, run.run_id)
    assert stored.data.metrics == {}
    assert stored.data.params == {}
    assert "matih.tenant_id" in stored.data.tags and stored.data.tags["matih.tenant_id"] == tenant
    with tenant_scope(tenant):
        assert backend.client.list_artifacts(run.run_id) == []


@pytest.mark.parametrize(
    ("experiment", "config", "match"),
    [
        ("", RunConfig(tenant_id="acme-corp"), "must not be empty"),
        ("x" * 257, RunConfig(tenant_id="acme-corp"), "limit"),
        ("bad\nname", RunConfig(tenant_id="acme-corp"), "control"),
        ("exp", RunConfig(), "tenant_id is required"),
        ("exp", RunConfig(tenant_id="Bad_Tenant"), "tenant_id"),
    ],
)
def test_bad_run_setup_is_refused_before_anything_is_created(tracker, experiment, config, match):
    with pytest.raises(ValidationError, match=match), tracker.start_run(experiment, config):
        pytest.fail("the block must not run")


def test_unknown_tenant_is_not_found_when_tenants_are_not_auto_created(isolated_settings):
    strict = ExperimentTracker(
        settings=isolated_settings.model_copy(update={"auto_create_tenants_env": False})
    )
    with pytest.raises(NotFoundError), strict.start_run("exp", RunConfig(tenant_id="nobody")):
        pytest.fail("the block must not run")


def test_get_experiment_tracker_is_a_singleton() -> None:
    assert get_experiment_tracker() is get_experiment_tracker()


def test_tracker_takes_the_specification_arguments(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'x.db'}"
    t = ExperimentTracker(
        tracking_uri=uri, default_artifact_root=str(tmp_path / "a"), registry_uri=None
    )
    assert t.tracking_uri == uri
    assert t.registry_uri == uri
    assert t.settings.artifact_root == str(tmp_path / "a")
