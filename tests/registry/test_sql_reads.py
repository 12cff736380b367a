"""The model pages and run comparisons read from MLflow's tables with SQL of our own
(``mlflow_adapter.model_reads``, ``run_reads``), on SQLite and on PostgreSQL, where the
lists of names and run ids go as one array (``= ANY``) instead of one parameter each:
the same rows, and another tenant's, with the same names, never among them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mlflow.entities import Metric, Param

from conftest import embedded_settings
from matih_ml.mlflow_adapter import model_reads, run_reads
from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
from matih_ml.mlflow_adapter.stores import registry_store, sql_engine
from matih_ml.tenancy import tenant_scope

A, B = "acme", "globex"
NAMES = [f"model-{i:03d}" for i in range(30)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores_of(request: pytest.FixtureRequest, tmp_path) -> Iterator:
    """Services on SQLite, then on PostgreSQL, with two tenants."""
    from matih_ml.services import build_services

    settings = embedded_settings(tmp_path)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
        settings = settings.model_copy(update={"tracking_uri_env": url, "auto_migrate_env": True})
    built = build_services(settings)
    for tenant in (A, B):
        built.tenants.create_tenant(tenant)
    yield built
    built.db.dispose()


def _models(services, tenant: str, names: list[str]) -> None:
    client = services.backend.client
    with tenant_scope(tenant):
        for name in names:
            client.create_registered_model(name, tags={"owner": tenant})
            client.create_model_version(name, "s3://b/m", tags={"who": f"{tenant}/{name}"})
        client.set_registered_model_alias(names[7], "champion", "1")


def test_a_page_and_its_versions_are_the_tenants_own(stores_of) -> None:
    _models(stores_of, A, NAMES)
    _models(stores_of, B, NAMES[:10])  # the same names in another tenant
    engine = registry_store(stores_of.backend.client).engine
    rows, more = model_reads.model_page(engine, A, limit=20, offset=5)
    assert [m.name for m in rows] == NAMES[5:25] and more
    assert all(m.tags == {"owner": A} for m in rows)
    found = model_reads.versions(engine, A, [m.name for m in rows])
    assert sorted(v.name for v in found) == NAMES[5:25]
    assert all(v.tags == {"who": f"{A}/{v.name}"} for v in found)
    assert [(v.name, v.aliases) for v in found if v.aliases] == [(NAMES[7], ["champion"])]
    last, more = model_reads.model_page(engine, A, limit=20, offset=25)
    assert [m.name for m in last] == NAMES[25:] and not more
    assert model_reads.versions(engine, B, NAMES[10:]) == []  # B has none of these names
    assert {v.tags["who"] for v in model_reads.versions(engine, B, NAMES)} == {
        f"{B}/{n}" for n in NAMES[:10]
    }


def test_compare_reads_the_tenants_runs_only(stores_of) -> None:
    client = stores_of.backend.client
    writer = BulkMetricWriter(client)
    ids = {}
    for tenant, runs in ((A, 12), (B, 3)):
        ids[tenant] = []
        for i in range(runs):
            run_id = stores_of.runs.create_run(tenant, "compare").info.run_id
            with tenant_scope(tenant):
                client.log_batch(run_id, params=[Param("i", str(i)), Param("t", tenant)])
                client.log_batch(run_id, metrics=[Metric("other", 1.0, 1, 0)])
                writer.write(run_id, [("loss", i / 10, 1, 0), ("acc", 1 - i / 10, 1, 0)])
            ids[tenant].append(run_id)
    engine = sql_engine(client)
    asked = ids[A] + ids[B][:3]
    found = run_reads.summaries(engine, A, asked, ["loss", "acc"])
    assert sorted(found) == sorted(ids[A])
    assert found[ids[A][1]].params == {"i": "1", "t": A}
    assert found[ids[A][11]].metrics == {"loss": 1.1, "acc": 1 - 1.1}
    every = run_reads.summaries(engine, A, ids[A][:2], None)
    assert every[ids[A][1]].metrics == {"loss": 0.1, "acc": 0.9, "other": 1.0}
    assert run_reads.summaries(engine, B, ids[A], None) == {}
