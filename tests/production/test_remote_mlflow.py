"""Remote MLflow server mode: `mlflow server --enable-workspaces` on PostgreSQL and S3,
and a `matih-ml serve` replica that reaches MLflow only over HTTP.

Proves that everything the API does still works through the server (registration,
runs, metrics, artifacts, gates), that each tenant is a workspace on the server,
and that tenants stay apart.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ServeProcess, ServerProcess
from production.stack import BUCKET, ROOT, client, upload


class MlflowServer(ServerProcess):
    """`mlflow server` with workspaces on, as its own process on a loopback port."""

    def __init__(self, log_path: Path, backend_uri: str, env: dict[str, str]) -> None:
        exe = shutil.which("mlflow", path=str(Path(sys.executable).parent))
        argv = [
            exe or "mlflow",
            "server",
            "--enable-workspaces",
            "--backend-store-uri",
            backend_uri,
            "--default-artifact-root",
            ROOT,
            "--no-serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
        ]
        super().__init__(log_path, argv, {**env, "MLFLOW_DISABLE_TELEMETRY": "true"}, "/health")


@pytest.fixture
def remote(tmp_path, postgres_database, s3_server, stack) -> Iterator[dict[str, str]]:
    """An MLflow server on PostgreSQL + S3, and the environment of a replica that uses it."""
    s3_env = {
        "MLFLOW_S3_ENDPOINT_URL": s3_server.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server = MlflowServer(tmp_path / "mlflow-server.log", postgres_database, s3_env)
    env = stack.env(
        MLFLOW_TRACKING_URI=server.url,
        MATIH_DATABASE_URL=postgres_database,
    )
    try:
        yield env
    finally:
        server.stop()


def test_the_api_works_through_a_remote_mlflow_server(remote, stack, s3_server, sk_model) -> None:
    from matih_ml.config import Settings
    from matih_ml.services import build_services

    # The MLflow server migrates its own tables; `db upgrade` does the service's.
    stack.cli(
        "db",
        "upgrade",
        MLFLOW_TRACKING_URI=remote["MLFLOW_TRACKING_URI"],
        MATIH_DATABASE_URL=remote["MATIH_DATABASE_URL"],
    )
    settings = Settings(
        MLFLOW_TRACKING_URI=remote["MLFLOW_TRACKING_URI"],
        MATIH_DATABASE_URL=remote["MATIH_DATABASE_URL"],
        MLFLOW_ARTIFACT_ROOT=ROOT,
        MATIH_DATA_DIR=remote["MATIH_DATA_DIR"],
    )
    services = build_services(settings)
    keys = {}
    for tenant in ("acme", "globex"):
        services.tenants.create_tenant(tenant)
        keys[tenant] = services.api_keys.create(tenant, "admin", "t").secret
    services.db.dispose()

    replica = ServeProcess(stack.tmp_path / "remote-replica.log", remote)
    try:
        ready = httpx.get(f"{replica.url}/readyz", timeout=30).json()
        assert ready["checks"] == {
            "database": "ok",
            "mlflow": "ok",
            "artifacts": "ok",
            "models": "ok",
        }
        with client(replica.url, keys["acme"]) as acme, client(replica.url, keys["globex"]) as gx:
            r = upload(acme, "churn", sk_model, metrics={"accuracy": 0.93})
            assert r.status_code == 201, r.text
            # Answers name the API's address of the files, never the bucket.
            assert r.json()["artifact_uri"] == "/api/v1/models/churn/versions/1/files"
            assert ROOT not in r.text
            run_id = acme.post("/api/v1/runs", json={"experiment_name": "train"}).json()["run_id"]
            points = [{"key": "loss", "value": 1 / (s + 1), "step": s} for s in range(20)]
            logged = acme.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": points})
            assert logged.status_code == 200, logged.text
            put = acme.put(f"/api/v1/runs/{run_id}/artifacts/notes/a.txt", content=b"hello")
            assert put.status_code == 201, put.text
            assert acme.get(f"/api/v1/runs/{run_id}/artifacts/notes/a.txt").content == b"hello"
            hist = acme.get(f"/api/v1/runs/{run_id}/metrics/loss/history").json()["items"]
            assert [p["step"] for p in hist] == list(range(20))
            # The staging gate loads the model back from S3 and predicts.
            moved = acme.put(
                "/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"}
            )
            assert moved.status_code == 200, moved.text
            assert moved.json()["stage"] == "staging"

            # The other tenant sees none of it, by list or by id.
            assert gx.get("/api/v1/models").json()["items"] == []
            assert gx.get("/api/v1/models/churn").status_code == 404
            assert gx.get(f"/api/v1/runs/{run_id}").status_code == 404
            assert gx.get(f"/api/v1/runs/{run_id}/artifacts/notes/a.txt").status_code == 404
            assert upload(gx, "churn", sk_model).status_code == 201
            assert gx.get("/api/v1/models/churn").json()["versions"] == ["1"]
            assert acme.get("/api/v1/models/churn").json()["stage"] == "staging"
    finally:
        replica.stop()

    # Each tenant is a workspace on the server, and its files sit under its own prefix.
    names = {w["name"] for w in _workspaces(remote["MLFLOW_TRACKING_URI"])}
    assert {"acme", "globex"} <= names
    keys_on_s3 = {
        o["Key"]
        for page in s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    }
    assert "root/acme/models/churn/1/MLmodel" in keys_on_s3
    assert "root/globex/models/churn/1/MLmodel" in keys_on_s3
    assert any(k.startswith("root/acme/") and k.endswith("notes/a.txt") for k in keys_on_s3)
    assert all(k.startswith(("root/acme/", "root/globex/")) for k in keys_on_s3), keys_on_s3


def _workspaces(url: str) -> list[dict]:
    r = httpx.get(f"{url}/api/3.0/mlflow/workspaces", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["workspaces"]
