"""The batch job specification: valid bodies parse, each bad one names its field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from matih_ml.batch_spec import batch_schema, check_under_root, validate_batch
from matih_ml.errors import ValidationError


@pytest.fixture(autouse=True)
def _restore_mlflow_environment() -> Iterator[None]:
    """Override the suite's autouse fixture: these checks need no MLflow store."""
    yield


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "churn",
        "input": {"path": "scoring/today.parquet"},
        "output": {"path": "scores/today.parquet"},
        **overrides,
    }


def field_of(bad: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        validate_batch(bad)
    return caught.value.details["field"]


def test_a_minimal_body_scores_with_production_in_batches_of_4096() -> None:
    spec = validate_batch(body())
    assert spec.target == ("stage", "production")
    assert spec.stage == "production" and spec.alias is None and spec.version is None
    assert spec.batch_size == 4096 and spec.concurrency is None
    assert spec.columns == [] and spec.key_columns == [] and spec.name == ""
    assert spec.input.resolved_format == "parquet"


def test_a_full_body_parses() -> None:
    spec = validate_batch(
        body(
            name="nightly scores",
            version="3",
            input={"path": "s3://lake/acme/in/", "format": "csv"},
            output={"path": "s3://lake/acme/out"},
            columns=["f0", "f1"],
            key_columns=["customer_id"],
            batch_size=100_000,
            concurrency=4,
        )
    )
    assert spec.target == ("version", "3")
    assert spec.input.resolved_format == "csv"
    assert spec.key_columns == ["customer_id"] and spec.concurrency == 4


@pytest.mark.parametrize(
    ("path", "fmt"), [("in/x.CSV", "csv"), ("in/x.parquet", "parquet"), ("in/folder", None)]
)
def test_the_format_follows_the_extension(path: str, fmt: str | None) -> None:
    assert validate_batch(body(input={"path": path})).input.resolved_format == fmt


def test_alias_and_staging_name_the_version() -> None:
    assert validate_batch(body(alias="champion")).target == ("alias", "champion")
    assert validate_batch(body(stage="staging")).target == ("stage", "staging")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": "no spaces"}, "model"),
        ({"model": 3}, "model"),
        ({"stage": "development"}, "stage"),
        ({"stage": "production", "version": "2"}, "version"),
        ({"alias": "champion", "version": "2"}, "version"),
        ({"version": "0"}, "version"),
        ({"version": 3}, "version"),
        ({"alias": "bad alias!"}, "alias"),
        ({"input": {"path": "/etc/passwd"}}, "input.path"),
        ({"input": {"path": "../other/x.parquet"}}, "input.path"),
        ({"input": {"path": "a/../../x.parquet"}}, "input.path"),
        ({"input": {"path": "http://x/y.parquet"}}, "input.path"),
        ({"input": {"path": "s3:///key"}}, "input.path"),
        ({"input": {"path": ""}}, "input.path"),
        ({"input": {"path": "."}}, "input.path"),
        ({"input": {"path": "x.parquet", "format": "json"}}, "input.format"),
        ({"input": {"path": "x.parquet", "extra": 1}}, "input.extra"),
        ({"input": "x.parquet"}, "input"),
        ({"output": {"path": "/tmp/out.parquet"}}, "output.path"),
        ({"output": {"path": "out/scores.csv"}}, "output.path"),
        ({"output": {"path": "scoring/today.parquet"}}, "output.path"),
        ({"input": {"path": "scoring"}, "output": {"path": "scoring/out"}}, "output.path"),
        ({"output": {"path": "scoring"}}, "output.path"),
        ({"columns": ["a", "a"]}, "columns"),
        ({"columns": [""]}, "columns.0"),
        ({"columns": "a"}, "columns"),
        ({"key_columns": ["id", "id"]}, "key_columns"),
        ({"key_columns": ["prediction"]}, "key_columns"),
        ({"key_columns": ["prediction_2"]}, "key_columns"),
        ({"key_columns": ["model_version"]}, "key_columns"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 100_001}, "batch_size"),
        ({"batch_size": "10"}, "batch_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"name": "x" * 129}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_each_bad_body_names_its_field(overrides: dict[str, Any], field: str) -> None:
    assert field_of(body(**overrides)) == field


@pytest.mark.parametrize("missing", ["model", "input", "output"])
def test_required_fields_are_named(missing: str) -> None:
    bad = body()
    del bad[missing]
    assert field_of(bad) == missing


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValidationError):
        validate_batch(["not", "an", "object"])


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_batch(body(batch_size=0, concurrency=0))
    fields = {p["field"] for p in caught.value.details["problems"]}
    assert fields == {"batch_size", "concurrency"}


@pytest.mark.parametrize(
    ("root", "path", "field"),
    [
        ("s3://lake/acme", "s3://lake/globex/x.parquet", "input.path"),
        ("s3://lake/acme", "s3://lake/acme-evil/x.parquet", "input.path"),
        ("s3://lake/acme", "s3://other/acme/x.parquet", "input.path"),
        ("/srv/data/acme", "s3://lake/acme/x.parquet", "input.path"),
    ],
)
def test_an_s3_path_outside_the_tenants_root_is_refused(root: str, path: str, field: str) -> None:
    spec = validate_batch(body(input={"path": path}))
    with pytest.raises(ValidationError) as caught:
        check_under_root(spec, root)
    assert caught.value.details["field"] == field


def test_an_output_outside_the_root_is_named() -> None:
    spec = validate_batch(body(output={"path": "s3://lake/globex/out.parquet"}))
    with pytest.raises(ValidationError) as caught:
        check_under_root(spec, "s3://lake/acme")
    assert caught.value.details["field"] == "output.path"


def test_paths_under_the_root_pass() -> None:
    spec = validate_batch(
        body(input={"path": "s3://lake/acme//in/"}, output={"path": "s3://lake/acme/out.parquet"})
    )
    check_under_root(spec, "s3://lake/acme")
    check_under_root(validate_batch(body()), "/srv/data/acme")
    check_under_root(validate_batch(body()), "s3://lake/acme")


def test_the_schema_names_the_fields() -> None:
    props = batch_schema()["properties"]
    assert {"model", "stage", "alias", "version", "input", "output", "batch_size"} <= set(props)
