"""The training job specification: valid jobs parse, each bad one names its field."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from matih_ml.errors import ValidationError
from matih_ml.job_spec import JobSpec, job_schema, validate_job

ENTRY = "acme_train.jobs:train"


@pytest.fixture(autouse=True)
def _restore_mlflow_environment() -> Iterator[None]:
    """Override the suite's autouse fixture: these checks need no MLflow store (3 s to build)."""
    yield


def sklearn_job() -> dict[str, Any]:
    return {
        "name": "churn nightly",
        "model_name": "churn-classifier",
        "trainer": {
            "kind": "sklearn",
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 100, "criterion": "gini", "bootstrap": True},
        },
        "data": {
            "kind": "table",
            "path": "churn/2024.parquet",
            "target": "churned",
            "features": ["tenure", "plan"],
        },
        "resources": {"num_workers": 2, "cpus_per_worker": 0.5},
        "tuning": {
            "search_space": {
                "max_depth": {"randint": [2, 16]},
                "min_samples_leaf": {"choice": [1, 2, 4]},
                "max_features": {"uniform": [0.1, 1.0]},
                "ccp_alpha": {"loguniform": [1e-5, 1e-1]},
            },
            "num_samples": 20,
            "metric": "roc_auc",
            "mode": "max",
            "max_concurrent_trials": 4,
        },
        "evaluation": {"primary_metric": "f1", "min_improvement": 0.01},
        "tags": {"team": "growth"},
    }


def pytorch_job() -> dict[str, Any]:
    return {
        "name": "prices-mlp",
        "model_name": "prices",
        "trainer": {
            "kind": "pytorch",
            "model": "mlp",
            "hidden": [64, 32],
            "epochs": 20,
            "lr": 0.001,
            "batch_size": 256,
        },
        "data": {"kind": "table", "path": "s3://tenant-a/prices/", "target": "price"},
        "resources": {"use_gpu": True},
        "evaluation": {"primary_metric": "rmse"},
        "register": False,
    }


def feast_job() -> dict[str, Any]:
    return {
        "name": "fraud",
        "model_name": "fraud.v2",
        "trainer": {"kind": "entry_point", "entry_point": ENTRY, "params": {"alpha": 0.5}},
        "data": {
            "kind": "feast",
            "features": ["txn_stats:amount_7d", "user_profile:age"],
            "entity_path": "fraud/entities.csv",
            "target": "is_fraud",
            "holdout_fraction": 0.3,
            "seed": 7,
        },
        "evaluation": {"primary_metric": "roc_auc", "higher_is_better": True},
        "target_stage": "development",
    }


def test_sklearn_job_with_tuning() -> None:
    spec = validate_job(sklearn_job())
    assert isinstance(spec, JobSpec)
    assert spec.trainer.params == {"n_estimators": 100, "criterion": "gini", "bootstrap": True}
    assert spec.tuning is not None and spec.tuning.scheduler == "asha"
    assert spec.tuning.search_space["ccp_alpha"].loguniform == [1e-5, 1e-1]
    assert spec.evaluation.higher_is_better is True
    assert spec.register and spec.target_stage == "staging"
    assert spec.data.kind == "table" and spec.data.holdout_fraction == 0.2


def test_pytorch_job_defaults_and_derived_direction() -> None:
    spec = validate_job(pytorch_job())
    assert spec.trainer.hidden == [64, 32] and spec.trainer.lr == 0.001
    assert spec.resources.num_workers == 1 and spec.resources.use_gpu
    assert spec.evaluation.higher_is_better is False  # rmse
    assert spec.tuning is None and spec.tags == {}


def test_feast_job_with_allowed_entry_point() -> None:
    spec = validate_job(feast_job(), entry_points=[ENTRY])
    assert spec.data.kind == "feast"
    assert spec.data.features == ["txn_stats:amount_7d", "user_profile:age"]
    assert spec.trainer.entry_point == ENTRY
    assert spec.tuning is None


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return body


_DELETE = object()
S, P, F = sklearn_job, pytorch_job, feast_job

SS = "tuning.search_space."
# (base job, dotted path to change, new value, reported field, words in the message)
BAD = [
    (S, "colour", "red", "colour", "not permitted"),
    (S, "trainer.estimator", "os.system", "trainer.estimator", "should be"),
    (F, "trainer.entry_point", "acme_train.jobs:other", "trainer.entry_point", "allow-list"),
    (F, "trainer.entry_point", "os.system", "trainer.entry_point", "'module:function'"),
    (S, "trainer.entry_point", ENTRY, "trainer.entry_point", "not allowed for a sklearn"),
    (S, SS + "ccp_alpha", {"loguniform": [0, 1]}, SS + "ccp_alpha.loguniform", "greater than 0"),
    (S, SS + "max_features", {"uniform": [1, 1]}, SS + "max_features.uniform", "less than hi"),
    (S, SS + "max_depth", {"randint": [9, 2]}, SS + "max_depth.randint", "less than hi"),
    (S, SS + "max_depth", {"choice": []}, SS + "max_depth.choice", "at least 1"),
    (S, SS + "max_depth", {}, SS + "max_depth", "exactly one"),
    (S, SS + "max_depth", {"randint": [1, 5], "choice": [1]}, SS + "max_depth", "exactly one"),
    (S, SS + "max_depth", {"normal": [0, 1]}, SS + "max_depth.normal", "not permitted"),
    (S, SS + "bad-name", {"choice": [1]}, SS + "bad-name", "pattern"),
    (S, SS + "n_estimators", {"randint": [10, 500]}, SS + "n_estimators", "trainer.params"),
    (S, "tuning.num_samples", 0, "tuning.num_samples", "greater than or equal to 1"),
    (S, "tuning.metric", "rmse", "tuning.metric", "not a metric the trainer reports"),
    (S, "tuning.mode", "min", "tuning.mode", "'max'"),
    (F, "data.features", ["txn_stats:amount_7d", "nocolon"], "data.features.1", "view:feature"),
    (S, "data.holdout_fraction", 0.95, "data.holdout_fraction", "less than 0.9"),
    (S, "data.path", "churn/../../other-tenant/x.csv", "data.path", "'..'"),
    (S, "data.path", "/etc/passwd.csv", "data.path", "relative"),
    (S, "data.path", "churn/2024.json", "data.path", ".parquet"),
    (F, "data.entity_path", "file:///x.csv", "data.entity_path", "s3://"),
    (S, "data.features", ["tenure", "churned"], "data.features", "target"),
    (S, "data.kind", "sql", "data.kind", "'table', 'feast'"),
    (S, "tags", {"matih.x": "1"}, "tags.matih.x", "reserved"),
    (S, "model_name", "churn/classifier", "model_name", "may only contain"),
    (S, "evaluation.primary_metric", "rmse", "evaluation.primary_metric", "classifier"),
    (S, "evaluation.higher_is_better", False, "evaluation.higher_is_better", "must be true"),
    (S, "trainer.params", {"n_jobs": [1]}, "trainer.params.n_jobs", "string, number or boolean"),
    (P, "trainer.hidden", _DELETE, "trainer.hidden", "required for a pytorch trainer"),
    (P, "trainer.hidden", [64, 32, 0], "trainer.hidden.2", "greater than or equal to 1"),
    (P, "trainer.hidden", [8] * 5, "trainer.hidden", "at most 4"),
    (P, "trainer.estimator", "sklearn.linear_model.Ridge", "trainer.estimator", "not allowed"),
    (P, "trainer.params", {"lr": 0.1}, "trainer.params.lr", "repeats"),
    (P, "trainer.lr", float("nan"), "trainer.lr", "finite"),
    (P, "trainer.epochs", "20", "trainer.epochs", "valid integer"),
    (P, "resources.num_workers", 0, "resources.num_workers", "greater than or equal to 1"),
    (P, "target_stage", "staging", "target_stage", "register"),
    (F, "trainer.kind", "sklearn", "trainer.estimator", "required for a sklearn trainer"),
    (S, "name", "  ", "name", "blank"),
]


@pytest.mark.parametrize(("base", "path", "value", "field", "word"), BAD)
def test_bad_job_names_its_field(base, path, value, field, word) -> None:
    body = _set(copy.deepcopy(base()), path, value)
    with pytest.raises(ValidationError) as caught:
        validate_job(body, entry_points=[ENTRY])
    err = caught.value
    assert err.details["field"] == field, err.details
    assert err.message.startswith(f"{field}: ")
    assert word in err.message
    assert err.details["problems"][0] == {"field": field, "message": err.message[len(field) + 2 :]}


def test_every_problem_is_listed() -> None:
    body = pytorch_job()
    body["trainer"].update(hidden=[0, 5000], epochs=0)
    with pytest.raises(ValidationError) as caught:
        validate_job(body)
    fields = [p["field"] for p in caught.value.details["problems"]]
    assert fields == ["trainer.hidden.0", "trainer.hidden.1", "trainer.epochs"]


def test_entry_points_are_refused_without_an_allow_list() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_job(feast_job())
    assert caught.value.details["field"] == "trainer.entry_point"


def test_a_body_that_is_not_an_object() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_job(["not", "a", "job"])
    assert caught.value.details["field"] == ""
    assert caught.value.code == "VALIDATION_ERROR"


def test_json_schema_lists_the_required_fields() -> None:
    schema = job_schema()
    assert isinstance(schema, dict)
    assert set(schema["required"]) == {"name", "model_name", "trainer", "data", "evaluation"}
    assert set(schema["properties"]) >= {"tuning", "resources", "register", "tags"}
    assert "TrainerSpec" in schema["$defs"]


def test_direct_parsing_without_an_allow_list_refuses_entry_points() -> None:
    with pytest.raises(PydanticValidationError) as caught:
        JobSpec.model_validate(feast_job())
    assert caught.value.errors()[0]["loc"] == ("trainer", "entry_point")


@pytest.mark.parametrize("make", [pytorch_job, feast_job])
def test_only_sklearn_trainers_can_be_tuned(make) -> None:
    body = make()
    metric = body["evaluation"]["primary_metric"]
    mode = "min" if metric in ("rmse", "mae") else "max"
    body["tuning"] = {
        "search_space": {"alpha": {"uniform": [0.1, 1.0]}},
        "num_samples": 2,
        "metric": metric,
        "mode": mode,
    }
    with pytest.raises(ValidationError) as caught:
        validate_job(body, entry_points={ENTRY})
    assert caught.value.details["field"] == "tuning"
    assert "only sklearn trainers can be tuned" in caught.value.message
