"""`matih-ml gc` on S3 (moto's server): it finds what crashes and MLflow's deletes leave
behind, removes exactly that, and spares live data and anything still young."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from matih_ml.cli import app
from matih_ml.config import Settings
from matih_ml.registry.metadata import (
    REGISTRATION_PENDING,
    RUN_KIND_REGISTRATION,
    TAG_REGISTRATION,
    TAG_RUN_KIND,
)
from matih_ml.services import build_services
from matih_ml.tenancy import tenant_scope

runner = CliRunner()


def _keys(s3, prefix: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow", Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def gc_env(tmp_path, s3_server, monkeypatch):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="mlflow")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MATIH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", "s3://mlflow/root")
    services = build_services(Settings())
    yield services, s3
    services.db.dispose()


def gc(*args: str) -> dict:
    result = runner.invoke(app, ["gc", *args, "--json"])
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


def test_gc_removes_exactly_the_leftovers(gc_env, sk_model, xy) -> None:
    services, s3 = gc_env
    client = services.backend.client
    services.tenants.create_tenant("acme")
    _, live = services.registry.register_model_version(
        "acme", "churn", sk_model, "sklearn", {"accuracy": 0.9}, {}
    )
    with tenant_scope("acme"):
        # A user's run with files of its own: never gc's business.
        user_run = client.create_run(client.create_experiment("mine")).info.run_id
        client.log_text(user_run, "keep me", "notes.txt")
        # A registration killed after its version existed: marked pending, files half-there.
        reg_run = client.search_model_versions("name = 'churn'")[0].run_id
        pending = client.create_model_version(
            "churn", "s3://mlflow/nowhere", reg_run, tags={TAG_REGISTRATION: REGISTRATION_PENDING}
        )
        # A registration killed before its version existed: a run and its upload.
        exp = client.get_experiment_by_name("models/churn").experiment_id
        lonely = client.create_run(exp, tags={TAG_RUN_KIND: RUN_KIND_REGISTRATION}).info.run_id
        client.log_text(lonely, "half a model", "model/MLmodel")
    # Folders with no version behind them (a delete that died halfway, say).
    for key in (
        "root/acme/models/ghost/3/MLmodel",
        "root/acme/models/churn/7/MLmodel",
        f"root/acme/models/churn/{pending.version}/MLmodel",
    ):
        s3.put_object(Bucket="mlflow", Key=key, Body=b"x")
    before = _keys(s3, "root/")

    # Within the grace period the pending version and the lonely run are spared (another
    # replica may be writing them); folders with no version are orphans at any age.
    young = gc("--dry-run")
    assert (young["pending_versions"], young["orphan_runs"]) == ([], [])
    assert len(young["orphan_folders"]) == 2

    found = gc("--older-than", "0", "--dry-run")
    assert found["dry_run"] is True
    assert found["pending_versions"] == [
        {"tenant_id": "acme", "model_id": "churn", "version": str(pending.version)}
    ]
    assert found["orphan_runs"] == [{"tenant_id": "acme", "run_id": lonely}]
    assert sorted(found["orphan_folders"]) == [
        "s3://mlflow/root/acme/models/churn/7",
        "s3://mlflow/root/acme/models/ghost/3",
    ]
    assert _keys(s3, "root/") == before  # a dry run removes nothing

    removed = gc("--older-than", "0")
    assert removed["total"] == 4
    after = _keys(s3, "root/")
    assert not any("/models/ghost/" in k or "/models/churn/7/" in k for k in after)
    assert not any(f"/models/churn/{pending.version}/" in k for k in after)
    assert not any(lonely in k for k in after)
    # Live data is whole: the live version's files, the user's run.
    assert f"root/acme/models/churn/{live.version}/MLmodel" in after
    assert any(user_run in k and k.endswith("notes.txt") for k in after)
    with tenant_scope("acme"):
        assert [str(v.version) for v in client.search_model_versions("name = 'churn'")] == [
            live.version
        ]
        assert client.get_run(lonely).info.lifecycle_stage == "deleted"
        assert client.get_run(user_run).info.lifecycle_stage == "active"
    assert services.registry.list_versions("acme", "churn")[0].version == live.version

    # A second pass finds nothing.
    assert gc("--older-than", "0")["total"] == 0
