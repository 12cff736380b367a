"""``get_model`` reads one model with the SQL of the model pages
(``mlflow_adapter.model_reads``), on SQLite and on PostgreSQL: the same metadata as the
model's item in ``list_models``, and as MLflow's own reads give; the tenant's model only,
never another tenant's of the same name; None for a name the tenant does not have."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import RegisteredModelTag
from sqlalchemy import event

from conftest import embedded_settings
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.mlflow_adapter.stores import registry_store, sql_engine
from matih_ml.registry.metadata import ModelMetadata
from matih_ml.registry.views import build_metadata
from matih_ml.tenancy import tenant_scope

A, B = "acme", "globex"


def _services(settings: Any) -> Any:
    from matih_ml.services import build_services

    built = build_services(settings)
    for tenant in (A, B):
        built.tenants.create_tenant(tenant)
    return built


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores_of(request: pytest.FixtureRequest, tmp_path) -> Iterator[Any]:
    """Services on SQLite, then on PostgreSQL, with two tenants."""
    settings = embedded_settings(tmp_path)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
        settings = settings.model_copy(update={"tracking_uri_env": url, "auto_migrate_env": True})
    built = _services(settings)
    yield built
    built.db.dispose()


def _run(services: Any, tenant: str, metrics: dict[str, float], params: dict[str, str]) -> str:
    client = services.backend.client
    run_id = services.runs.create_run(tenant, "models").info.run_id
    with tenant_scope(tenant):
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
    return run_id


def _version(services: Any, tenant: str, name: str, stage: str, **options: Any) -> None:
    tags = {"matih.stage": stage, "matih.framework": "sklearn", **options.pop("tags", {})}
    with tenant_scope(tenant):
        services.backend.client.create_model_version(name, "s3://b/m", tags=tags, **options)


def _seed(services: Any) -> None:
    """Models of A: without versions, in several stages, tagged, described; and B's models
    of the same names with other tags, descriptions and versions."""
    client = services.backend.client
    with tenant_scope(A):
        client.create_registered_model("empty")
        client.create_registered_model(
            "staged",
            tags={"team": "risk", "matih.model_type": "classifier", "matih.created_by": "ann"},
            description="the model's own words",
        )
        client.create_registered_model("described", description="kept when versions say none")
        # A prompt: a registered model with MLflow's prompt tag, written by its prompt API
        # (through the store), which get_registered_model refuses to show.
        registry_store(client).create_registered_model(
            "prompt", tags=[RegisteredModelTag("mlflow.prompt.is_prompt", "true")]
        )
    run = _run(services, A, {"auc": 0.91, "loss": math.nan}, {"depth": "4"})
    old = _run(services, A, {"auc": 0.5}, {"depth": "1"})
    _version(services, A, "staged", "archived", run_id=old)
    _version(services, A, "staged", "production", run_id=run, description="v2's words")
    _version(services, A, "staged", "staging", run_id=old)
    _version(services, A, "staged", "development")
    # Half-registered: never shown, and not the current version although it is the newest.
    _version(services, A, "staged", "production", tags={"matih.registration": "pending"})
    _version(services, A, "described", "staging", run_id=old)
    with tenant_scope(B):
        for name in ("staged", "empty", "only-b"):
            client.create_registered_model(name, tags={"team": "b"}, description=f"B's {name}")
    b_run = _run(services, B, {"auc": 0.1}, {"depth": "9"})
    for stage in ("production", "production", "staging"):
        _version(services, B, "staged", stage, run_id=b_run)


def _same(got: ModelMetadata, want: ModelMetadata) -> None:
    """Equal field by field, a NaN metric equal to a NaN."""
    assert {k for k, v in got.metrics.items() if math.isnan(v)} == {
        k for k, v in want.metrics.items() if math.isnan(v)
    }
    finite = {k: v for k, v in got.metrics.items() if not math.isnan(v)}
    assert finite == {k: v for k, v in want.metrics.items() if not math.isnan(v)}
    assert {**vars(got), "metrics": None} == {**vars(want), "metrics": None}


def _mlflow_reads(services: Any, tenant: str, name: str) -> ModelMetadata:
    """The metadata MLflow's own reads give (get_model's answer before the SQL path)."""
    client = services.backend.client
    with tenant_scope(tenant):
        return build_metadata(client, tenant, [client.get_registered_model(name)])[0]


def test_get_model_is_the_models_item_in_the_list(stores_of) -> None:
    _seed(stores_of)
    registry = stores_of.registry
    listed = {m.name: m for m in registry.list_models(A)}
    for name in ("empty", "staged", "described"):
        got = registry.get_model(A, name)
        assert got is not None
        _same(got, listed[name])
        _same(got, _mlflow_reads(stores_of, A, name))
    staged = registry.get_model(A, "staged")
    assert staged is not None
    assert (staged.stage, staged.current_version, staged.versions) == (
        "production",
        "2",
        ["1", "2", "3", "4"],
    )
    assert staged.description == "v2's words"
    assert staged.parameters == {"depth": "4"} and staged.metrics["auc"] == 0.91
    assert math.isnan(staged.metrics["loss"])  # MLflow keeps a NaN; 0.0 would be a lie
    assert (staged.tags, staged.model_type, staged.created_by) == (
        {"team": "risk"},
        "classifier",
        "ann",
    )
    assert staged.framework == "sklearn" and staged.tenant_id == A
    empty = registry.get_model(A, "empty")
    assert empty is not None
    assert (empty.versions, empty.current_version, empty.stage) == ([], "", "development")
    assert registry.get_model(A, "described").description == "kept when versions say none"
    # A prompt is not a model to MLflow's get_registered_model: None, as before.
    assert registry.get_model(A, "prompt") is None


def test_get_model_never_answers_another_tenants_model(stores_of) -> None:
    _seed(stores_of)
    registry = stores_of.registry
    a, b = registry.get_model(A, "staged"), registry.get_model(B, "staged")
    assert a is not None and b is not None
    assert (a.tenant_id, a.tags, a.versions) == (A, {"team": "risk"}, ["1", "2", "3", "4"])
    assert (b.tenant_id, b.tags, b.versions, b.description) == (
        B,
        {"team": "b"},
        ["1", "2", "3"],
        "B's staged",
    )
    assert b.metrics == {"auc": 0.1} and b.parameters == {"depth": "9"}
    _same(b, {m.name: m for m in registry.list_models(B)}["staged"])
    assert registry.get_model(A, "only-b") is None  # B's name, not A's
    assert registry.get_model(A, "unknown") is None
    assert registry.get_model(A, "STAGED") is None  # names are exact, as MLflow's
    with pytest.raises(NotFoundError):
        registry.get_model("no-such-tenant", "staged")
    with pytest.raises(ValidationError):
        registry.get_model(A, "../staged")


def test_get_model_reads_in_a_few_statements(stores_of) -> None:
    """The SQL path, not MLflow's ORM reads (a dozen statements and more)."""
    _seed(stores_of)
    client = stores_of.backend.client
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    engines = {id(e): e for e in (sql_engine(client), registry_store(client).engine)}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", seen)
    try:
        assert stores_of.registry.get_model(A, "staged") is not None
        model_only = len(statements)
        statements.clear()
        assert stores_of.registry.get_model(A, "unknown") is None
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", seen)
    # The model and its tags; versions, their tags, aliases; runs, params, metrics.
    assert model_only <= 7
    assert len(statements) == 1


def test_get_model_and_the_list_read_a_registry_on_its_own_database(tmp_path) -> None:
    """With MLFLOW_REGISTRY_URI on another database, models are read from that one."""
    settings = embedded_settings(tmp_path).model_copy(
        update={"registry_uri_env": f"sqlite:///{(tmp_path / 'registry.db').resolve()}"}
    )
    services = _services(settings)
    try:
        run = _run(services, A, {"auc": 0.7}, {"depth": "3"})
        with tenant_scope(A):
            services.backend.client.create_registered_model("apart", tags={"team": "x"})
        _version(services, A, "apart", "staging", run_id=run)
        got = services.registry.get_model(A, "apart")
        assert got is not None
        assert (got.stage, got.metrics, got.parameters) == ("staging", {"auc": 0.7}, {"depth": "3"})
        assert [m.name for m in services.registry.list_models(A)] == ["apart"]
        _same(got, _mlflow_reads(services, A, "apart"))
    finally:
        services.db.dispose()
