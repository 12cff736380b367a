"""Serving under concurrency: two replicas (two PredictionServices on one database) and
many threads announce a deployment once and open an alert episode once, on SQLite and
PostgreSQL; the model cache loads a version once and stays bounded."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from concurrency import in_threads
from conftest import embedded_settings, new_tenant_id
from matih_ml.events.catalog import EventType
from matih_ml.monitoring.live import Window
from matih_ml.serving.cache import ModelCache
from matih_ml.serving.service import PredictionService

FEATURES = ["f0", "f1", "f2", "f3"]


def _frame(seed: int, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(shift, 1.0, (n, 4)), columns=FEATURES)


def _production_model(services, tenant: str, name: str) -> str:
    x = _frame(0, 300)
    model = LogisticRegression().fit(x, (x.f0 > 0).astype(int))
    for _ in range(2):
        md = services.registry.register_model(
            tenant, name, model, "sklearn", {}, {}, input_example=x.iloc[:200]
        )
    version = md.current_version or "2"
    services.lifecycle.transition_stage(tenant, name, "1", "staging")
    services.lifecycle.transition_stage(
        tenant, name, "1", "production", force=True, reason="test", actor="admin"
    )
    return version


def _deployed(services, tenant: str) -> list[dict]:
    return [
        e["data"]
        for e in services.events.feed(tenant, after=0, types=[EventType.MODEL_DEPLOYED], limit=1000)
    ]


def _replicas_race(services) -> None:
    tenant = services.tenants.create_tenant(new_tenant_id("race")).tenant_id
    _production_model(services, tenant, "raced")
    replicas = [PredictionService(services), PredictionService(services)]
    rows = {"records": _frame(1, 3).to_dict(orient="records")}

    def work(i: int) -> None:
        for _ in range(5):
            assert replicas[i % 2].predict(tenant, "raced", rows).version == "1"

    try:
        in_threads(8, work)
        assert [(d["version"], d["replaced"]) for d in _deployed(services, tenant)] == [("1", None)]
        # A move to v2 is announced once more, whichever replica serves it first.
        services.lifecycle.transition_stage(tenant, "raced", "2", "staging")
        services.lifecycle.transition_stage(
            tenant, "raced", "2", "production", force=True, reason="test", actor="admin"
        )
        for r in replicas:
            r.resolver.invalidate(tenant)  # the other replica learns within its check
        in_threads(8, lambda i: replicas[i % 2].predict(tenant, "raced", rows))
        assert [(d["version"], d["replaced"]) for d in _deployed(services, tenant)] == [
            ("1", None),
            ("2", "1"),
        ]
        # Both replicas open the drift episode at once: one event.
        drifted = Window(500)
        for row in _frame(9, 200, shift=4.0).to_dict(orient="records"):
            drifted.rows.append(row)
            drifted.predictions.append(1)
            drifted.latencies_ms.append(0.5)
            drifted.errors.append(False)
        drifted.requests = 200
        profile = replicas[0].cache.get(tenant, "raced", "2").profile
        assert profile is not None

        def check(i: int) -> None:
            replicas[i % 2].monitor.check(tenant, "raced", "2", drifted, profile, 1000.0)

        in_threads(8, check)
        drift = services.events.feed(
            tenant, after=0, types=[EventType.MODEL_DRIFT_DETECTED], limit=100
        )
        assert len(drift) == 1
    finally:
        for r in replicas:
            r.stop()


@pytest.mark.parametrize("repeat", range(2))
def test_two_replicas_announce_and_alert_once_on_sqlite(services, repeat) -> None:
    _replicas_race(services)


def test_two_replicas_announce_and_alert_once_on_postgresql(tmp_path, postgres_database) -> None:
    from matih_ml.services import build_services

    settings = embedded_settings(tmp_path).model_copy(
        update={
            "tracking_uri_env": postgres_database,
            "database_url_env": postgres_database,
            "auto_migrate_env": True,
        }
    )
    services = build_services(settings)
    try:
        _replicas_race(services)
    finally:
        services.db.dispose()


def test_the_cache_loads_each_version_once_and_stays_bounded(tmp_path: Path, services) -> None:
    import mlflow.sklearn

    x = _frame(0, 50)
    source = tmp_path / "source"
    mlflow.sklearn.save_model(
        LogisticRegression().fit(x, (x.f0 > 0).astype(int)),
        str(source),
        pip_requirements=["scikit-learn"],
    )
    downloads: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def download(tenant: str, model: str, version: str, dest: Path) -> Path:
        import shutil

        with lock:
            downloads.append((tenant, model, version))
        shutil.copytree(source, dest, dirs_exist_ok=True)
        return dest

    cache = ModelCache(2, tmp_path / "cache", download, services.runtime)
    in_threads(8, lambda i: cache.get("t1", "m", "1"))
    assert cache.loads == 1 and downloads == [("t1", "m", "1")]
    cache.get("t1", "m", "2")
    cache.get("t1", "m", "1")  # most recent again
    cache.get("t1", "m", "3")  # evicts v2, the least recently used
    assert cache.cached() == [("t1", "m", "1"), ("t1", "m", "3")]
    cache.get("t1", "m", "2")
    assert cache.loads == 4
    # Files stay on disk: a reload after eviction does not download again.
    assert downloads.count(("t1", "m", "2")) == 1


def test_a_new_replica_loads_what_was_serving_before_it_is_ready(services) -> None:
    tenant = services.tenants.create_tenant(new_tenant_id("warm")).tenant_id
    _production_model(services, tenant, "warmed")
    rows = {"records": _frame(1, 2).to_dict(orient="records")}
    first = PredictionService(services)
    try:
        assert first.predict(tenant, "warmed", rows).version == "1"
    finally:
        first.stop()
    # Production moves while no replica of this process serves it.
    services.lifecycle.transition_stage(tenant, "warmed", "2", "staging")
    services.lifecycle.transition_stage(
        tenant, "warmed", "2", "production", force=True, reason="test", actor="admin"
    )
    second = PredictionService(services)
    assert not second.warm.is_set()
    second.start()
    try:
        assert second.warm.wait(60)
        # What production names now is loaded, not what the last replica served.
        assert (tenant, "warmed", "2") in second.cache.cached()
        loads = second.cache.loads
        assert second.predict(tenant, "warmed", rows).version == "2"
        assert second.cache.loads == loads
    finally:
        second.stop()


def test_readyz_waits_for_the_preload(services) -> None:
    from fastapi.testclient import TestClient

    from matih_ml.api.app import create_app

    app = create_app(services=services)
    serving = PredictionService(services)
    app.state.serving = serving  # never started (no lifespan here): still loading
    client = TestClient(app)
    loading = client.get("/readyz")
    assert loading.status_code == 503 and loading.json()["checks"]["models"] == "loading"
    serving.warm.set()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["models"] == "ok"
    serving.stop()
