"""GET /api/v1/models/{id}/versions/{v}/bom: a version's CycloneDX BOM over HTTP."""

from __future__ import annotations

import io

import numpy as np
import torch
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from api.helpers import error, ok, register
from matih_ml.client import ClientConfig, MatihClient
from matih_ml.registry.metadata import TAG_SIGNATURE_DIGEST

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


def bom_of(client, model: str, version: str = "1") -> dict:
    r = client.get(f"/api/v1/models/{model}/versions/{version}/bom")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    assert VALIDATOR.validate_str(r.text) is None
    return r.json()


def pins_of(client, model: str) -> dict[str, str]:
    """requirements.txt's exact pins, read over the API as a user would."""
    r = client.get(f"/api/v1/models/{model}/versions/1/files/requirements.txt")
    assert r.status_code == 200, r.text
    pins = {}
    for line in r.text.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def assert_names_pins(doc: dict, pins: dict[str, str], framework: str) -> None:
    assert framework in pins
    libs = {c["name"]: c for c in doc["components"] if c["type"] == "library"}
    assert {n: libs[n]["version"] for n in pins} == pins
    assert libs[framework]["purl"].startswith(f"pkg:pypi/{framework}@")


def test_viewer_reads_valid_boms_of_sklearn_onnx_and_pytorch_versions(
    acme, services, saved_sklearn_model, sk_model
) -> None:
    from skl2onnx import to_onnx

    register(acme.editor, saved_sklearn_model)
    onx = to_onnx(sk_model, np.zeros((1, 4), dtype=np.float32))
    ok(
        acme.editor.post(
            "/api/v1/models",
            data={"name": "onx", "framework": "onnx"},
            files={"file": ("m.onnx", onx.SerializeToString())},
        ),
        201,
    )
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), buf)
    ok(
        acme.editor.post(
            "/api/v1/models",
            data={"name": "ts", "framework": "pytorch"},
            files={"file": ("m.pt", buf.getvalue())},
        ),
        201,
    )
    for model, framework in (("churn", "scikit-learn"), ("onx", "onnx"), ("ts", "torch")):
        doc = bom_of(acme.viewer, model)
        component = doc["metadata"]["component"]
        assert component["type"] == "machine-learning-model"
        assert (component["name"], component["version"]) == (model, "1")
        assert "modelCard" in component
        assert_names_pins(doc, pins_of(acme.viewer, model), framework)
        props = {p["name"]: p["value"] for p in component["properties"]}
        # The embedded default signs every version: the BOM carries the version's digest.
        tags = services.registry.version_tags(acme.tenant_id, model, "1")
        assert props["matih:signature"] == "signed"
        assert props["matih:signature.digest"] == tags[TAG_SIGNATURE_DIGEST]
    # The registered run's metrics are the card's.
    card = bom_of(acme.viewer, "churn")["metadata"]["component"]["modelCard"]
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "accuracy", "value": "0.9"}
    ]


def test_client_and_bom_agree(api, acme, saved_sklearn_model) -> None:
    register(acme.editor, saved_sklearn_model)
    over_http = bom_of(acme.viewer, "churn")
    with MatihClient(config=ClientConfig(api.url, acme.keys["viewer"])) as client:
        doc = client.models.bom("churn", 1)
    assert doc["serialNumber"] == over_http["serialNumber"]
    assert doc["metadata"]["component"] == over_http["metadata"]["component"]


def test_another_tenants_key_unknown_and_bad_versions_are_json_errors(
    acme, globex, saved_sklearn_model
) -> None:
    register(acme.editor, saved_sklearn_model)
    error(globex.admin.get("/api/v1/models/churn/versions/1/bom"), 404, "NOT_FOUND")
    error(acme.viewer.get("/api/v1/models/churn/versions/7/bom"), 404, "NOT_FOUND")
    error(acme.viewer.get("/api/v1/models/nope/versions/1/bom"), 404, "NOT_FOUND")
    error(acme.viewer.get("/api/v1/models/churn/versions/x1/bom"), 422)
