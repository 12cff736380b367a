import asyncio
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression

from matih_ml.errors import ConflictError, NotFoundError, ValidationError
from matih_ml.registry import ModelMetadata, RegistryService, Stage
from matih_ml.tenancy import tenant_scope
from matih_ml.tracking import RunConfig


def register(registry: RegistryService, tenant: str, model, name: str = "churn", **kw):
    kw.setdefault("metrics", {"accuracy": 0.91})
    kw.setdefault("parameters", {"C": 1.0})
    return registry.register_model(tenant, name, model, kw.pop("framework", "sklearn"), **kw)


def test_register_model_creates_model_version_and_files(registry, backend, tenant, sk_model, xy):
    md = register(
        registry,
        tenant,
        sk_model,
        tags={"team": "growth"},
        created_by="alice",
        description="first",
        input_example=xy[0][:2],
    )
    assert isinstance(md, ModelMetadata)
    assert (md.model_id, md.name, md.tenant_id) == ("churn", "churn", tenant)
    assert (md.framework, md.model_type, md.stage) == ("sklearn", "classification", "development")
    assert (md.current_version, md.versions) == ("1", ["1"])
    assert md.metrics == {"accuracy": 0.91}
    assert md.parameters == {"C": "1.0"}
    assert md.tags == {"team": "growth"}
    assert md.created_by == "alice"
    assert md.description == "first"
    # The specification's layout, under the tenant's own prefix.
    assert md.artifact_uri == f"{backend.settings.artifact_root}/{tenant}/models/churn/1"
    files = {p.name for p in Path(md.artifact_uri).iterdir()}
    assert {"MLmodel", "requirements.txt", "model_card.md"} <= files
    reqs = (Path(md.artifact_uri) / "requirements.txt").read_text()
    assert "scikit-learn==" in reqs and "mlflow==" in reqs
    card = (Path(md.artifact_uri) / "model_card.md").read_text()
    assert "churn v1" in card and "accuracy" in card and "0.91" in card
    version = registry.get_version(tenant, "churn", 1)
    assert version.run_id and version.run_id in card
    loaded = mlflow.pyfunc.load_model(md.artifact_uri)
    assert list(loaded.predict(xy[0][:5])) == list(sk_model.predict(xy[0][:5]))


def test_register_again_makes_a_new_version(registry, tenant, sk_model) -> None:
    register(registry, tenant, sk_model)
    md = register(registry, tenant, sk_model, metrics={"accuracy": 0.95})
    assert md.versions == ["1", "2"]
    assert md.current_version == "2"
    assert md.metrics == {"accuracy": 0.95}


def test_model_type_is_inferred_for_regressors_and_clusterers(registry, tenant, xy) -> None:
    x, y = xy
    assert register(registry, tenant, LinearRegression().fit(x, y), "reg").model_type == (
        "regression"
    )
    km = KMeans(n_clusters=2, n_init=2, random_state=0).fit(x)
    assert register(registry, tenant, km, "clu").model_type == "clustering"


def test_get_model_returns_none_for_an_unknown_model(registry, tenant) -> None:
    assert registry.get_model(tenant, "nope") is None
    with pytest.raises(NotFoundError):
        registry.require_model(tenant, "nope")


def test_get_model_for_an_unknown_tenant_is_not_found(registry) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        registry.get_model("no-such-tenant-xyz", "churn")


def test_list_models_filters_by_stage_and_framework(registry, move, tenant, sk_model) -> None:
    import onnx
    from skl2onnx import to_onnx

    register(registry, tenant, sk_model, "a")
    register(registry, tenant, sk_model, "b")
    onnx_model = to_onnx(sk_model, np.zeros((1, 4), dtype=np.float32))
    assert isinstance(onnx_model, onnx.ModelProto)
    register(registry, tenant, onnx_model, "c", framework="onnx")
    move(tenant, "b", "1", "staging")
    assert [m.name for m in registry.list_models(tenant)] == ["a", "b", "c"]
    assert [m.name for m in registry.list_models(tenant, stage="staging")] == ["b"]
    assert [m.name for m in registry.list_models(tenant, stage="development")] == ["a", "c"]
    assert [m.name for m in registry.list_models(tenant, framework="onnx")] == ["c"]
    assert [m.name for m in registry.list_models(tenant, stage="staging", framework="onnx")] == []
    assert registry.list_models(tenant, stage="production") == []
    with pytest.raises(ValidationError, match="stage"):
        registry.list_models(tenant, stage="live")
    with pytest.raises(ValidationError, match="framework"):
        registry.list_models(tenant, framework="xgboost")


def test_list_models_pages(registry, tenant, sk_model) -> None:
    for name in ("m1", "m2", "m3"):
        register(registry, tenant, sk_model, name)
    first = registry.list_models_page(tenant, max_results=2)
    assert [m.name for m in first.items] == ["m1", "m2"] and first.next_page_token
    second = registry.list_models_page(tenant, max_results=2, page_token=first.next_page_token)
    assert [m.name for m in second.items] == ["m3"] and second.next_page_token is None


def test_transitions_follow_the_lifecycle(
    registry, move, open_gates, backend, tenant, sk_model, xy
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = xy
    flipped = LogisticRegression().fit(x, 1 - y)
    register(registry, tenant, sk_model)
    register(registry, tenant, flipped)
    md = move(tenant, "churn", "1", "staging")
    assert (md.stage, md.current_version) == ("staging", "1")
    md = move(tenant, "churn", "1", "production")
    assert (md.stage, md.current_version) == ("production", "1")
    move(tenant, "churn", "2", "staging")
    md = move(tenant, "churn", "2", "Production")
    assert (md.stage, md.current_version) == ("production", "2")
    # Promoting archives the previous production version.
    assert registry.get_version(tenant, "churn", 1).stage == "archived"
    with tenant_scope(tenant):
        # Both loader URIs serve the production version; its alias followed it.
        for uri in ("models:/churn/Production", "models:/churn@production"):
            got = mlflow.pyfunc.load_model(uri).predict(x)
            assert list(got) == list(flipped.predict(x)) != list(sk_model.predict(x))
        mv = backend.client.get_model_version("churn", "2")
        assert "production" in mv.aliases and mv.current_stage == "Production"
        assert "production" not in backend.client.get_model_version("churn", "1").aliases
    # Any stage can go back to development (rollback request).
    md = move(tenant, "churn", "2", "development")
    assert registry.get_version(tenant, "churn", 2).stage == "development"


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], "production"),
        ([], "archived"),
        (["staging"], "archived"),
        (["staging", "production", "archived"], "staging"),
        (["staging", "production", "archived"], "production"),
    ],
)
def test_refused_transitions_change_nothing(
    registry, move, open_gates, tenant, sk_model, path, target
) -> None:
    register(registry, tenant, sk_model)
    for stage in path:
        move(tenant, "churn", "1", stage)
    before = registry.get_version(tenant, "churn", 1).stage
    with pytest.raises(ConflictError, match=f"not {target}"):
        move(tenant, "churn", "1", target)
    assert registry.get_version(tenant, "churn", 1).stage == before


def test_transition_to_the_same_stage_is_a_no_op(registry, move, tenant, sk_model) -> None:
    register(registry, tenant, sk_model)
    move(tenant, "churn", "1", "staging")
    assert move(tenant, "churn", "1", "staging").stage == "staging"


def test_transition_of_unknown_model_or_version(registry, move, tenant, sk_model) -> None:
    with pytest.raises(NotFoundError):
        move(tenant, "ghost", "1", "staging")
    register(registry, tenant, sk_model)
    with pytest.raises(NotFoundError):
        move(tenant, "churn", "9", "staging")
    with pytest.raises(ValidationError):
        move(tenant, "churn", "one", "staging")


def test_delete_model_removes_it_and_its_files(registry, tenant, sk_model) -> None:
    md = register(registry, tenant, sk_model)
    registry.delete_model(tenant, "churn")
    assert registry.get_model(tenant, "churn") is None
    assert not Path(md.artifact_uri).exists()
    with pytest.raises(NotFoundError):
        registry.delete_model(tenant, "churn")


def test_delete_refused_while_in_production(registry, move, open_gates, tenant, sk_model) -> None:
    register(registry, tenant, sk_model)
    move(tenant, "churn", "1", "staging")
    move(tenant, "churn", "1", "production")
    with pytest.raises(ConflictError, match="production"):
        registry.delete_model(tenant, "churn")
    with pytest.raises(ConflictError, match="production"):
        registry.delete_version(tenant, "churn", "1")
    assert registry.get_model(tenant, "churn") is not None


def test_delete_version_of_development_or_staging(registry, move, tenant, sk_model) -> None:
    register(registry, tenant, sk_model)
    md = register(registry, tenant, sk_model)
    move(tenant, "churn", "2", "staging")
    registry.delete_version(tenant, "churn", "2")
    assert registry.get_model(tenant, "churn").versions == ["1"]
    assert not Path(md.artifact_uri).exists()


def test_create_version_from_a_training_run(
    registry, lifecycle, tracker, tenant, sk_model, tmp_path
):
    import mlflow.sklearn

    local = tmp_path / "m"
    mlflow.sklearn.save_model(sk_model, str(local))
    with tracker.start_run("train", RunConfig(tenant_id=tenant, user_id="bob")) as run:
        run.log_params({"C": 1}).log_metrics({"accuracy": 0.88}).log_artifact(local, "model")
    v = lifecycle.register_from_run(tenant, "churn", run.run_id)
    assert (v.version, v.stage, v.framework, v.run_id) == (
        "1",
        "development",
        "sklearn",
        run.run_id,
    )
    assert Path(v.artifact_uri, "model_card.md").exists()
    md = registry.get_model(tenant, "churn")
    assert md.metrics == {"accuracy": 0.88} and md.parameters == {"C": "1"}
    # Registering the same run into the same model again gives the same version.
    assert lifecycle.register_from_run(tenant, "churn", run.run_id).version == "1"
    assert registry.get_model(tenant, "churn").versions == ["1"]


def test_create_version_from_a_stock_mlflow_logged_model(
    registry, lifecycle, tracker, tenant, sk_model
):
    import mlflow.sklearn

    with (
        tracker.start_run("train", RunConfig(tenant_id=tenant)) as run,
        tenant_scope(tenant),
        mlflow.start_run(run_id=run.run_id),
    ):
        mlflow.sklearn.log_model(sk_model, name="clf")
    v = lifecycle.register_from_run(tenant, "churn", run.run_id, artifact_path="clf")
    assert v.framework == "sklearn"


def test_create_version_refuses_a_run_without_a_model(registry, lifecycle, tracker, tenant) -> None:
    with tracker.start_run("train", RunConfig(tenant_id=tenant)) as run:
        pass
    with pytest.raises(ValidationError, match="no MLflow model"):
        lifecycle.register_from_run(tenant, "churn", run.run_id)
    assert registry.get_model(tenant, "churn") is None


def test_log_training_metrics_writes_one_step(registry, tracker, backend, tenant) -> None:
    with tracker.start_run("train", RunConfig(tenant_id=tenant)) as run:
        pass
    registry.log_training_metrics(tenant, run.run_id, 7, {"loss": 0.3, "acc": 0.8})
    with tenant_scope(tenant):
        hist = backend.client.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(7, 0.3)]


def test_log_training_metrics_to_a_missing_run_is_not_found(registry, tenant) -> None:
    with pytest.raises(NotFoundError):
        registry.log_training_metrics(tenant, "0" * 32, 1, {"loss": 0.1})
    with pytest.raises(ValidationError, match="run_id"):
        registry.log_training_metrics(tenant, "not-a-run", 1, {"loss": 0.1})


def test_compare_runs_reads_no_run_one_by_one(registry, tracker, backend, tenant, monkeypatch):
    ids = []
    for i in range(5):
        with tracker.start_run(f"exp-{i % 2}", RunConfig(tenant_id=tenant)) as run:
            run.log_params({"lr": i}).log_metrics({"loss": 1 / (i + 1), "acc": i / 10})
            ids.append(run.run_id)
    calls = {"search_runs": 0, "get_run": 0}
    real_search, real_get = backend.client.search_runs, backend.client.get_run

    def counting_search(*a, **k):
        calls["search_runs"] += 1
        return real_search(*a, **k)

    def counting_get(*a, **k):
        calls["get_run"] += 1
        return real_get(*a, **k)

    monkeypatch.setattr(backend.client, "search_runs", counting_search)
    monkeypatch.setattr(backend.client, "get_run", counting_get)
    out = registry.compare_runs(tenant, list(reversed(ids)), ["loss", "missing"])
    # On the SQL stores: three queries of our own, no MLflow call per run (or at all).
    assert calls == {"search_runs": 0, "get_run": 0}
    assert [r["run_id"] for r in out] == list(reversed(ids))
    assert out[0]["parameters"] == {"lr": "4"}
    assert out[0]["metrics"] == {"loss": 0.2, "missing": None}
    # Through a store that is not SQL (a remote MLflow server): one search, same answer.
    monkeypatch.setattr("matih_ml.registry.service.sql_engine", lambda client: None)
    assert registry.compare_runs(tenant, list(reversed(ids)), ["loss", "missing"]) == out
    assert calls == {"search_runs": 1, "get_run": 0}


def test_compare_runs_never_finds_another_tenants_runs(registry, tracker, tenant, other_tenant):
    with tracker.start_run("mine", RunConfig(tenant_id=tenant)) as run:
        run.log_params({"secret": "x"})
    with pytest.raises(NotFoundError):
        registry.compare_runs(other_tenant, [run.run_id], [])


def test_compare_runs_can_show_only_the_parameters_that_differ(registry, tracker, tenant):
    ids = []
    for lr, depth in ((0.1, 3), (0.2, 3), (0.1, 3)):
        with tracker.start_run("diff", RunConfig(tenant_id=tenant)) as run:
            run.log_params({"lr": lr, "depth": depth, "seed": 7})
            ids.append(run.run_id)
    with tracker.start_run("diff", RunConfig(tenant_id=tenant)) as run:
        run.log_params({"lr": 0.1, "depth": 3, "seed": 7, "extra": "x"})
        ids.append(run.run_id)
    out = registry.compare_runs(tenant, ids, [], only_differences=True)
    assert [r["parameters"] for r in out] == [
        {"lr": "0.1"},
        {"lr": "0.2"},
        {"lr": "0.1"},
        {"lr": "0.1", "extra": "x"},  # a parameter some runs lack differs
    ]
    assert registry.compare_runs(tenant, ids[:1], [])[0]["parameters"] == {
        "lr": "0.1",
        "depth": "3",
        "seed": "7",
    }


def test_compare_runs_names_missing_runs(registry, tenant) -> None:
    with pytest.raises(NotFoundError, match="0" * 32):
        registry.compare_runs(tenant, ["0" * 32], ["loss"])


def test_async_facade_runs_every_seed_method(async_registry, tracker, tenant, sk_model, tmp_path):
    import mlflow.sklearn

    async def scenario() -> None:
        md = await async_registry.register_model(
            tenant, "churn", sk_model, "sklearn", {"accuracy": 0.9}, {"C": 1}, {"t": "1"}
        )
        assert md.current_version == "1"
        assert (await async_registry.get_model(tenant, "churn")).name == "churn"
        assert [
            m.name
            for m in await async_registry.list_models(
                tenant, stage="development", framework="sklearn"
            )
        ] == ["churn"]
        md = await async_registry.transition_stage(tenant, "churn", "1", "staging")
        assert md.stage == Stage.STAGING
        local = tmp_path / "m"
        mlflow.sklearn.save_model(sk_model, str(local))
        with tracker.start_run("train", RunConfig(tenant_id=tenant)) as run:
            run.log_artifact(local, "model")
        v = await async_registry.create_version(tenant, "churn", run.run_id)
        assert v.version == "2"
        await async_registry.log_training_metrics(tenant, run.run_id, 1, {"loss": 0.5})
        cmp = await async_registry.compare_runs(tenant, [run.run_id], ["loss"])
        assert cmp[0]["metrics"] == {"loss": 0.5}
        await async_registry.transition_stage(tenant, "churn", "1", "development")
        await async_registry.delete_model(tenant, "churn")
        assert await async_registry.get_model(tenant, "churn") is None

    asyncio.run(scenario())


def test_another_tenant_sees_nothing(
    registry, lifecycle, move, tenant, other_tenant, sk_model
) -> None:
    md = register(registry, tenant, sk_model)
    assert registry.get_model(other_tenant, "churn") is None
    assert registry.list_models(other_tenant) == []
    with pytest.raises(NotFoundError):
        move(other_tenant, "churn", "1", "staging")
    with pytest.raises(NotFoundError):
        registry.delete_model(other_tenant, "churn")
    with pytest.raises(NotFoundError):
        registry.get_version(other_tenant, "churn", "1")
    run_id = registry.get_version(tenant, "churn", "1").run_id
    with pytest.raises(NotFoundError):
        registry.compare_runs(other_tenant, [run_id], ["accuracy"])
    with pytest.raises(NotFoundError):
        registry.log_training_metrics(other_tenant, run_id, 1, {"x": 1.0})
    with pytest.raises(NotFoundError):
        lifecycle.register_from_run(other_tenant, "stolen", run_id)
    assert registry.get_model(tenant, "churn").versions == md.versions
