"""The ML bill of materials of a version: CycloneDX 1.6, valid, naming what the version
holds (requirements.txt's exact versions, the run, its datasets, Feast views, the
signature)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from mlflow.entities import Dataset, DatasetInput, InputTag

from matih_ml.errors import NotFoundError
from matih_ml.registry.bom import BomFacts, bill_of_materials, build_bom, parse_requirements
from matih_ml.tenancy import tenant_scope
from matih_ml.tracking.inputs import DatasetRef, _mlflow_input

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


def valid(doc: dict[str, Any]) -> dict[str, Any]:
    error = VALIDATOR.validate_str(json.dumps(doc))
    assert error is None, str(error)[:2000]
    return doc


def pinned(artifact_uri: str) -> dict[str, str]:
    """requirements.txt's exact pins, by canonical name."""
    out = {}
    for line in (Path(artifact_uri) / "requirements.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def libraries(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc.get("components", []) if c["type"] == "library"}


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def assert_names_requirements(doc: dict[str, Any], artifact_uri: str, framework_pkg: str):
    pins = pinned(artifact_uri)
    assert framework_pkg in pins
    libs = libraries(doc)
    for name, version in pins.items():
        assert libs[name]["version"] == version
        assert libs[name]["purl"] == f"pkg:pypi/{name}@{version}".replace("+", "%2B")
    assert props(libs[framework_pkg]).get("matih:role") == "framework"
    model = doc["metadata"]["component"]
    depends = next(d for d in doc["dependencies"] if d["ref"] == model["bom-ref"])
    assert {libs[n]["bom-ref"] for n in pins} <= set(depends["dependsOn"])


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_sklearn_bom_is_valid_cyclonedx_with_model_card_and_exact_requirements(
    registry, backend, tenants, tenant, sk_model, xy
) -> None:
    md = registry.register_model(
        tenant,
        "clf",
        sk_model,
        "sklearn",
        {"accuracy": 0.91},
        {"C": 1.0},
        description="churn classifier",
        input_example=xy[0][:2],
    )
    doc = valid(bill_of_materials(backend, tenants, tenant, "clf", 1))
    assert doc["specVersion"] == "1.6"
    assert_names_requirements(doc, md.artifact_uri, "scikit-learn")
    model = doc["metadata"]["component"]
    assert (model["type"], model["name"], model["version"]) == (
        "machine-learning-model",
        "clf",
        "1",
    )
    assert model["description"] == "churn classifier"
    card = model["modelCard"]
    assert card["modelParameters"]["task"] == "classification"
    assert card["modelParameters"]["approach"] == {"type": "supervised"}
    assert card["modelParameters"]["architectureFamily"] == "sklearn"
    # The signature MLflow inferred from the input example (a float64 array of 4 columns).
    assert card["modelParameters"]["inputs"] == [{"format": "tensor float64 [-1, 4]"}]
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "accuracy", "value": "0.91"}
    ]
    assert {"name": "param:C", "value": "1.0"} in card["properties"]
    p = props(model)
    # Registration signs every version (docs/provenance.md): the BOM names its signature.
    tags = registry.version_tags(tenant, "clf", "1")
    assert p["matih:signature"] == "signed"
    assert p["matih:signature.digest"] == tags["matih.signature.digest"]
    assert p["matih:signature.key_id"] == tags["matih.signature.key_id"]
    run_id = registry.get_version(tenant, "clf", 1).run_id
    assert p["matih:run_id"] == run_id
    assert {"type": "build-meta", "url": f"/api/v1/runs/{run_id}"} in [
        {"type": r["type"], "url": r["url"]} for r in model["externalReferences"]
    ]


def test_pytorch_bom_is_valid_and_names_torch(registry, backend, tenants, tenant) -> None:
    torch.manual_seed(0)
    md = registry.register_model(tenant, "net", TinyNet().eval(), "pytorch", {"loss": 0.1}, {})
    doc = valid(bill_of_materials(backend, tenants, tenant, "net", 1))
    assert_names_requirements(doc, md.artifact_uri, "torch")
    assert libraries(doc)["torch"]["version"].startswith("2.13.0")
    assert doc["metadata"]["component"]["modelCard"]["modelParameters"]["architectureFamily"] == (
        "pytorch"
    )


def test_onnx_bom_is_valid_and_names_onnx(registry, backend, tenants, tenant, sk_model, xy) -> None:
    from skl2onnx import to_onnx

    onnx_model = to_onnx(sk_model, xy[0][:1].astype(np.float32))
    md = registry.register_model(tenant, "onx", onnx_model, "onnx", {"accuracy": 0.9}, {})
    doc = valid(bill_of_materials(backend, tenants, tenant, "onx", 1))
    assert_names_requirements(doc, md.artifact_uri, "onnx")
    card = doc["metadata"]["component"]["modelCard"]
    assert card["modelParameters"]["architectureFamily"] == "onnx"


def test_bom_names_datasets_feature_views_training_run_and_signature(
    registry, backend, tenants, tenant, sk_model
) -> None:
    training = backend.client
    with tenant_scope(tenant):
        exp = training.create_experiment(f"train-{tenant}")
        train_run = training.create_run(exp).info.run_id
        dataset = Dataset("churn.csv", "d41d8cd9", "local", '{"uri": "data/churn.csv"}')
        # And one recorded as the lineage recorder records it: a sha256 is longer than
        # MLflow's digest column, which keeps its first 36 characters.
        table = DatasetRef("events", "sha256:" + "ab" * 32, "s3://lake/events").checked()
        training.log_inputs(
            train_run,
            datasets=[
                DatasetInput(dataset, [InputTag("mlflow.data.context", "training")]),
                _mlflow_input(table),
            ],
        )
        training.set_terminated(train_run)
    tags = {
        "training_run_id": train_run,
        "feast.project": "shop",
        "feast.view.customers": "0123456789ab",
        "feast.features": "customers:age,customers:spend",
    }
    registry.register_model(tenant, "fed", sk_model, "sklearn", {"accuracy": 0.8}, {}, tags)
    with tenant_scope(tenant):
        backend.client.set_model_version_tag("fed", "1", "matih.signature.digest", "sha256:ab12")
        backend.client.set_model_version_tag("fed", "1", "matih.signature.key_id", "k1")
    doc = valid(bill_of_materials(backend, tenants, tenant, "fed", 1))
    model = doc["metadata"]["component"]
    p = props(model)
    assert p["matih:signature"] == "signed"
    assert p["matih:signature.digest"] == "sha256:ab12"
    assert p["matih:signature.key_id"] == "k1"
    assert p["matih:training_run_id"] == train_run
    assert f"/api/v1/runs/{train_run}" in [r["url"] for r in model["externalReferences"]]
    data = {c["bom-ref"]: c for c in doc["components"] if c["type"] == "data"}
    ds = data["dataset:churn.csv@d41d8cd9"]
    assert props(ds)["matih:dataset.source"] == '{"uri": "data/churn.csv"}'
    assert props(ds)["matih:dataset.context"] == "training"
    assert f"dataset:events@sha256:{'ab' * 32}" in data  # the whole digest, not MLflow's cut
    view = data["feast:shop/customers@0123456789ab"]
    assert props(view)["matih:feast.features"] == "age,spend"
    refs = [d["ref"] for d in model["modelCard"]["modelParameters"]["datasets"]]
    assert sorted(refs) == sorted(data)


def test_bom_of_unknown_version_or_other_tenants_model_is_not_found(
    registry, backend, tenants, tenant, other_tenant, sk_model
) -> None:
    registry.register_model(tenant, "mine", sk_model, "sklearn", {}, {})
    with pytest.raises(NotFoundError):
        bill_of_materials(backend, tenants, tenant, "mine", 9)
    with pytest.raises(NotFoundError):
        bill_of_materials(backend, tenants, other_tenant, "mine", 1)


def test_requirements_keep_exact_pins_only_and_skip_options() -> None:
    reqs = parse_requirements(
        "# comment\n-r base.txt\nmlflow==3.17.0\nScikit_Learn==1.5.2  # pinned\n"
        "torch==2.13.0+cpu\nnumpy>=1.26\nnot a requirement!\n"
    )
    assert [(r.name, r.version) for r in reqs] == [
        ("mlflow", "3.17.0"),
        ("scikit-learn", "1.5.2"),
        ("torch", "2.13.0+cpu"),
        ("numpy", None),
    ]


def test_a_version_without_files_or_run_still_gives_a_valid_bom() -> None:
    doc = valid(build_bom(BomFacts(tenant_id="t", model="m", version="3", framework="onnx")))
    assert doc["metadata"]["component"]["modelCard"]["modelParameters"] == {
        "architectureFamily": "onnx"
    }
    assert "components" not in doc or doc["components"] == []
