"""Many promotions of as many versions of one model at once, through the API, split
across two service processes on one database. Afterwards exactly one version is in
production (in the lifecycle's store and in MLflow), and replaying the history gives
the final state. Run on one SQLite file, and on PostgreSQL.

`make test` races ten promotions (five into each process); `make load` races twenty
(MATIH_RACE_VERSIONS). Registering and staging the versions beforehand is most of the
time (about 2.5 s a version on a loaded 2-core machine), not the race, so the second
process starts while they are registered."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import httpx

from conftest import LiveServer, ServeProcess, embedded_settings
from matih_ml.api.app import create_app
from matih_ml.registry.policy import Policy, ProductionGate, StagingGate
from matih_ml.services import build_services
from matih_ml.tenancy import tenant_scope

VERSIONS = int(os.environ.get("MATIH_RACE_VERSIONS", "10"))


def _start_in_background(start: Callable[[], ServeProcess]) -> Future[ServeProcess]:
    """Start the other process while this one registers the versions (its start-up
    imports MLflow: 10-30 s on a loaded 2-core machine)."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(start)
    finally:
        pool.shutdown(wait=False)


def _scenario(services, urls: Callable[[], list[str]], sk_model) -> None:
    tenant = "race"
    services.tenants.create_tenant(tenant)
    services.lifecycle.policies.set(
        tenant,
        Policy(
            staging=StagingGate(prediction_check="off"),
            production=ProductionGate(require_approval=False),
        ),
    )
    versions = []
    for _ in range(VERSIONS):
        _, v = services.registry.register_model_version(
            tenant, "churn", sk_model, "sklearn", {"accuracy": 0.9}, {}
        )
        services.lifecycle.transition_stage(tenant, "churn", v.version, "staging")
        versions.append(v.version)
    assert VERSIONS >= 4, "a race needs a few promotions into each process"
    key = services.api_keys.create(tenant, "editor", "racer").secret
    barrier = threading.Barrier(VERSIONS)
    targets = urls()

    def promote(i: int) -> int:
        with httpx.Client(
            base_url=targets[i % len(targets)],
            timeout=120,
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            barrier.wait()
            r = client.put(
                "/api/v1/models/churn/stage", json={"version": versions[i], "stage": "production"}
            )
            return r.status_code

    with ThreadPoolExecutor(VERSIONS) as pool:
        statuses = list(pool.map(promote, range(VERSIONS)))
    assert statuses == [200] * VERSIONS

    stages = {v: services.lifecycle.stage(tenant, "churn", v).value for v in versions}
    producing = [v for v, s in stages.items() if s == "production"]
    assert len(producing) == 1
    assert sorted(s for s in stages.values() if s != "production") == ["archived"] * (VERSIONS - 1)
    with tenant_scope(tenant):
        mirrored = {
            str(mv.version): (mv.tags["matih.stage"], mv.current_stage)
            for mv in services.backend.client.search_model_versions("name = 'churn'")
        }
        alias = services.backend.client.get_model_version_by_alias("churn", "production")
    assert [v for v, (tag, st) in mirrored.items() if tag == "production"] == producing
    assert [v for v, (tag, st) in mirrored.items() if st == "Production"] == producing
    assert str(alias.version) == producing[0]
    # The history replays to the final state, and never had two versions in production.
    replay: dict[str, str] = {}
    in_production: set[str] = set()
    for move in services.lifecycle.history(tenant, "churn"):
        assert replay.get(move.version, "development") == move.from_stage
        replay[move.version] = move.to_stage
        in_production.discard(move.version)
        if move.to_stage == "production":
            in_production.add(move.version)
        assert len(in_production) <= 1
    assert replay == stages
    assert services.lifecycle.production_at(tenant, "churn", datetime.now(UTC)) == producing[0]


def test_many_promotions_two_processes_one_sqlite_file(tmp_path, sk_model) -> None:
    services = build_services(embedded_settings(tmp_path / "data"))
    other = _start_in_background(
        lambda: ServeProcess(tmp_path / "serve.log", {"MATIH_DATA_DIR": str(tmp_path / "data")})
    )
    here = LiveServer(create_app(services=services))
    try:
        _scenario(services, lambda: [here.url, other.result().url], sk_model)
    finally:
        here.stop()
        other.result().stop()


def test_many_promotions_two_processes_on_postgresql(tmp_path, postgres_database, sk_model):
    env = {
        "MLFLOW_TRACKING_URI": postgres_database,
        "MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "MATIH_DATA_DIR": str(tmp_path / "data"),
        "MATIH_AUTO_MIGRATE": "1",
    }
    settings = embedded_settings(tmp_path / "data").model_copy(
        update={
            "tracking_uri_env": postgres_database,
            "artifact_root_env": str(tmp_path / "artifacts"),
            "auto_migrate_env": True,
        }
    )
    services = build_services(settings)
    assert services.db.url.startswith("postgresql")
    other = _start_in_background(lambda: ServeProcess(tmp_path / "serve.log", env))
    here = LiveServer(create_app(services=services))
    try:
        _scenario(services, lambda: [here.url, other.result().url], sk_model)
    finally:
        here.stop()
        other.result().stop()
        services.db.dispose()
