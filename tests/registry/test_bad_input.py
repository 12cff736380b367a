"""Bad input to the registry: a typed error, and nothing written."""

import pytest
from mlflow.entities import ViewType

from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.tenancy import tenant_scope


def _nothing_written(backend, registry, tenant) -> None:
    assert registry.list_models(tenant) == []
    with tenant_scope(tenant):
        assert backend.client.search_experiments(view_type=ViewType.ALL) == []


@pytest.mark.parametrize(
    ("name", "framework", "metrics", "params", "tags", "match"),
    [
        ("", "sklearn", {}, {}, None, "must not be empty"),
        ("x" * 129, "sklearn", {}, {}, None, "limit is 128"),
        ("acme/churn", "sklearn", {}, {}, None, "may only contain"),
        ("churn'; --", "sklearn", {}, {}, None, "may only contain"),
        ("-lead", "sklearn", {}, {}, None, "may only contain"),
        (123, "sklearn", {}, {}, None, "must be a string"),
        ("churn", "xgboost", {}, {}, None, "not supported"),
        ("churn", "sklearn", {"acc!": 1.0}, {}, None, "metric key"),
        ("churn", "sklearn", {"acc": "high"}, {}, None, "must be a number"),
        ("churn", "sklearn", {"acc": float("nan")}, {}, None, "finite"),
        ("churn", "sklearn", [("acc", 1.0)], {}, None, "mapping"),
        ("churn", "sklearn", {}, {"C": "x" * 7000}, None, "limit"),
        ("churn", "sklearn", {}, {}, {"matih.stage": "production"}, "reserved"),
    ],
)
def test_register_model_refuses_bad_input(
    registry, backend, tenant, sk_model, name, framework, metrics, params, tags, match
):
    with pytest.raises(ValidationError, match=match):
        registry.register_model(tenant, name, sk_model, framework, metrics, params, tags)
    _nothing_written(backend, registry, tenant)


@pytest.mark.parametrize("bad_tenant", ["", "UPPER", "a", "x" * 64, "with space", "default"])
def test_bad_tenant_is_refused_before_anything_is_written(registry, sk_model, bad_tenant):
    with pytest.raises(ValidationError, match="tenant_id"):
        registry.register_model(bad_tenant, "churn", sk_model, "sklearn", {}, {})


@pytest.mark.parametrize("run_id", ["", "abc", "../../etc", "0" * 31, "G" * 32])
def test_bad_run_ids_are_validation_errors(registry, lifecycle, tenant, run_id) -> None:
    with pytest.raises(ValidationError, match="run_id"):
        lifecycle.register_from_run(tenant, "churn", run_id)
    with pytest.raises(ValidationError, match="run_id"):
        registry.compare_runs(tenant, [run_id], ["loss"])
    assert registry.list_models(tenant) == []


def test_missing_run_is_not_found_and_creates_no_model(registry, lifecycle, tenant) -> None:
    with pytest.raises(NotFoundError):
        lifecycle.register_from_run(tenant, "churn", "f" * 32)
    assert registry.list_models(tenant) == []
