"""S3 artifacts through a real S3 protocol endpoint (moto's server): every tenant's
objects under its own prefix, models loading back from them, and deletes removing them."""

from __future__ import annotations

import mlflow
import pytest

from conftest import embedded_settings
from matih_ml.services import build_services
from matih_ml.tenancy import tenant_scope
from matih_ml.tracking import ExperimentTracker, RunConfig


def _keys(s3, bucket: str, prefix: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def s3_services(tmp_path, s3_server):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="mlflow")
    settings = embedded_settings(tmp_path / "data").model_copy(
        update={"artifact_root_env": "s3://mlflow/root"}
    )
    services = build_services(settings)
    yield services, s3
    services.db.dispose()


def test_runs_and_models_land_under_each_tenants_prefix(s3_services, sk_model, xy) -> None:
    services, s3 = s3_services
    x, _ = xy
    for tenant in ("acme", "globex"):
        services.tenants.create_tenant(tenant)
    tracker = ExperimentTracker(settings=services.settings)
    with tracker.start_run("train", RunConfig(tenant_id="acme")) as run:
        run.log_dict({"lr": 0.1}, "config/params.json")
    md, v = services.registry.register_model_version(
        "acme", "churn", sk_model, "sklearn", {"accuracy": 0.9}, {}, input_example=x[:2]
    )
    assert md.artifact_uri == "s3://mlflow/root/acme/models/churn/1"
    keys = _keys(s3, "mlflow", "root/")
    assert all(k.startswith("root/acme/") for k in keys), keys
    assert {
        "root/acme/models/churn/1/MLmodel",
        "root/acme/models/churn/1/requirements.txt",
        "root/acme/models/churn/1/model_card.md",
    } <= keys
    assert any(k.endswith("/artifacts/config/params.json") for k in keys)
    with tenant_scope("acme"):
        for uri in ("models:/churn/1", md.artifact_uri):
            assert list(mlflow.pyfunc.load_model(uri).predict(x)) == list(sk_model.predict(x))
    # The lifecycle's load-and-predict gate reads the S3 copy too.
    services.lifecycle.transition_stage("acme", "churn", v.version, "staging")
    assert services.lifecycle.gate_evidence("acme", "churn", v.version)[-1]["passed"]


def test_deleting_a_version_or_a_model_removes_its_objects(s3_services, sk_model) -> None:
    services, s3 = s3_services
    services.tenants.create_tenant("acme")
    for _ in range(2):
        services.registry.register_model("acme", "churn", sk_model, "sklearn", {}, {})
    assert _keys(s3, "mlflow", "root/acme/models/churn/2/")
    services.lifecycle.delete_version("acme", "churn", "2")
    assert _keys(s3, "mlflow", "root/acme/models/churn/2/") == set()
    assert _keys(s3, "mlflow", "root/acme/models/churn/1/")
    services.lifecycle.delete_model("acme", "churn")
    assert _keys(s3, "mlflow", "root/acme/models/churn/") == set()
