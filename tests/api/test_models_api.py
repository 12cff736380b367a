import io
import json

import joblib
import numpy as np
import pytest
import torch

from api.helpers import error, new_run, ok, register, run_with_model


def test_register_from_a_run_then_read_list_and_delete(acme, saved_sklearn_model) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    md = ok(
        acme.editor.post(
            "/api/v1/models",
            json={
                "name": "churn",
                "run_id": run_id,
                "framework": "sklearn",
                "description": "d",
                "metrics": {"f1": 0.8},
                "parameters": {"depth": 3},
                "tags": {"team": "growth"},
            },
        ),
        201,
    )
    assert md["name"] == "churn" and md["current_version"] == "1"
    assert md["model_type"] == "classification" and md["framework"] == "sklearn"
    assert md["metrics"] == {"accuracy": 0.9, "f1": 0.8}
    assert md["parameters"] == {"C": "1", "depth": "3"}
    assert md["tenant_id"] == acme.tenant_id
    assert ok(acme.viewer.get("/api/v1/models/churn"))["versions"] == ["1"]
    page = ok(
        acme.viewer.get("/api/v1/models", params={"stage": "development", "framework": "sklearn"})
    )
    assert [m["name"] for m in page["items"]] == ["churn"] and page["next_page_token"] is None
    assert ok(acme.viewer.get("/api/v1/models", params={"stage": "production"}))["items"] == []
    assert acme.admin.delete("/api/v1/models/churn").status_code == 204
    error(acme.viewer.get("/api/v1/models/churn"), 404, "NOT_FOUND")


def test_register_is_idempotent_for_the_same_run(acme, saved_sklearn_model) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    for status, created in ((201, True), (200, False)):
        md = ok(acme.editor.post("/api/v1/models", json={"name": "m", "run_id": run_id}), status)
        assert (md["registered_version"], md["created"]) == ("1", created)
    assert md["versions"] == ["1"]


def test_register_refuses_a_framework_mismatch(acme, saved_sklearn_model) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    before = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    body = {
        "name": "m",
        "run_id": run_id,
        "framework": "onnx",
        "metrics": {"f1": 0.5},
        "parameters": {"depth": 9},
    }
    error(acme.editor.post("/api/v1/models", json=body), 422)
    error(acme.viewer.get("/api/v1/models/m"), 404)
    # The refused registration wrote none of its metrics or parameters.
    after = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    assert (after["metrics"], after["params"]) == (before["metrics"], before["params"])


def test_registering_again_does_not_log_the_metrics_twice(acme, saved_sklearn_model) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    body = {"name": "m", "run_id": run_id, "metrics": {"f1": 0.5}}
    for status in (201, 200):
        ok(acme.editor.post("/api/v1/models", json=body), status)
    history = ok(acme.viewer.get(f"/api/v1/runs/{run_id}/metrics/f1/history"))["items"]
    assert [p["value"] for p in history] == [0.5]
    version = ok(acme.viewer.get("/api/v1/models/m/versions/1"))
    card = acme.viewer.get(f"{version['artifact_uri']}/model_card.md").text
    assert "`f1` | 0.5" in card


def test_models_list_pages(acme, saved_sklearn_model) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    for name in ("a", "b", "c"):
        ok(acme.editor.post("/api/v1/models", json={"name": name, "run_id": run_id}), 201)
    first = ok(acme.viewer.get("/api/v1/models", params={"max_results": 2}))
    assert [m["name"] for m in first["items"]] == ["a", "b"]
    second = ok(
        acme.viewer.get(
            "/api/v1/models", params={"max_results": 2, "page_token": first["next_page_token"]}
        )
    )
    assert [m["name"] for m in second["items"]] == ["c"] and second["next_page_token"] is None


def test_upload_sklearn_joblib(acme, sk_model, xy) -> None:
    buf = io.BytesIO()
    joblib.dump(sk_model, buf)
    meta = {"metrics": {"accuracy": 0.93}, "parameters": {"C": 1.0}, "tags": {"src": "upload"}}
    md = ok(
        acme.editor.post(
            "/api/v1/models",
            data={"name": "uploaded", "framework": "sklearn", "metadata": json.dumps(meta)},
            files={"file": ("model.joblib", buf.getvalue())},
        ),
        201,
    )
    assert md["framework"] == "sklearn" and md["metrics"] == {"accuracy": 0.93}
    assert md["created_by"] == "editor-key"


def test_upload_onnx(acme, sk_model) -> None:
    from skl2onnx import to_onnx

    onx = to_onnx(sk_model, np.zeros((1, 4), dtype=np.float32))
    md = ok(
        acme.editor.post(
            "/api/v1/models",
            data={"name": "onx", "framework": "onnx"},
            files={"file": ("m.onnx", onx.SerializeToString())},
        ),
        201,
    )
    assert md["framework"] == "onnx"


def test_upload_torchscript(acme) -> None:
    net = torch.jit.script(torch.nn.Linear(3, 1))
    buf = io.BytesIO()
    torch.jit.save(net, buf)
    md = ok(
        acme.editor.post(
            "/api/v1/models",
            data={"name": "ts", "framework": "pytorch"},
            files={"file": ("m.pt", buf.getvalue())},
        ),
        201,
    )
    assert md["framework"] == "pytorch"


@pytest.mark.parametrize(
    ("data", "files", "field"),
    [
        ({"name": "x", "framework": "sklearn"}, {"file": ("m.pkl", b"not a pickle")}, "file"),
        ({"name": "x", "framework": "onnx"}, {"file": ("m.onnx", b"\x00\x01garbage")}, "file"),
        ({"name": "x", "framework": "pytorch"}, {"file": ("m.pt", b"nope")}, "file"),
        ({"name": "x", "framework": "xgboost"}, {"file": ("m", b"x")}, "framework"),
        ({"name": "x"}, {"file": ("m", b"x")}, "name"),
        (
            {"name": "x", "framework": "sklearn", "metadata": "{not json"},
            {"file": ("m", b"x")},
            "metadata",
        ),
    ],
)
def test_bad_uploads_are_422_and_write_nothing(acme, data, files, field) -> None:
    err = error(acme.editor.post("/api/v1/models", data=data, files=files), 422)
    assert err["details"].get("field") == field
    assert ok(acme.viewer.get("/api/v1/models"))["items"] == []


def test_viewer_cannot_upload(acme, sk_model) -> None:
    buf = io.BytesIO()
    joblib.dump(sk_model, buf)
    error(
        acme.viewer.post(
            "/api/v1/models",
            data={"name": "u", "framework": "sklearn"},
            files={"file": ("m", buf.getvalue())},
        ),
        403,
        "FORBIDDEN",
    )


def test_versions_and_stages(acme, saved_sklearn_model) -> None:
    ok(acme.admin.put("/api/v1/policy", json={"production": {"require_approval": False}}))
    register(acme.editor, saved_sklearn_model)
    run2 = run_with_model(acme.editor, saved_sklearn_model)
    v2 = ok(acme.editor.post("/api/v1/models/churn/versions", json={"run_id": run2}), 201)
    assert v2["version"] == "2" and v2["stage"] == "development"
    versions = ok(acme.viewer.get("/api/v1/models/churn/versions"))["items"]
    assert [v["version"] for v in versions] == ["2", "1"]
    assert ok(acme.viewer.get("/api/v1/models/churn/versions/1"))["run_id"]
    md = ok(
        acme.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"})
    )
    assert md["stage"] == "staging"
    ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "production"}))
    err = error(
        acme.editor.put("/api/v1/models/churn/stage", json={"version": "2", "stage": "production"}),
        409,
        "CONFLICT",
    )
    assert "development" in err["message"]
    error(
        acme.editor.put("/api/v1/models/churn/stage", json={"version": "2", "stage": "live"}), 422
    )
    error(acme.admin.delete("/api/v1/models/churn"), 409)
    error(acme.admin.delete("/api/v1/models/churn/versions/1"), 409)
    assert acme.admin.delete("/api/v1/models/churn/versions/2").status_code == 204
    error(acme.viewer.get("/api/v1/models/churn/versions/2"), 404)
    error(acme.viewer.get("/api/v1/models/churn/versions/abc"), 422)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "", "run_id": "0" * 32},
        {"name": "a/b", "run_id": "0" * 32},
        {"name": "x" * 200, "run_id": "0" * 32},
        {"name": "caf\u00e9", "run_id": "0" * 32},
        {"name": "a\u0000b", "run_id": "0" * 32},
        {"name": "line\nbreak", "run_id": "0" * 32},
        {"name": "..", "run_id": "0" * 32},
        {"name": "it's", "run_id": "0" * 32},
        {"name": "ok", "run_id": "not-hex"},
        {"name": "ok", "run_id": "0" * 32, "unexpected": 1},
        {"name": "ok", "run_id": "0" * 32, "metrics": {"a": "high"}},
        [1, 2],
    ],
)
def test_bad_json_registration_is_422(acme, body) -> None:
    error(acme.editor.post("/api/v1/models", json=body), 422, "VALIDATION_ERROR")
    assert ok(acme.viewer.get("/api/v1/models"))["items"] == []


def test_malformed_json_and_wrong_content_type(acme) -> None:
    error(
        acme.editor.post(
            "/api/v1/models", content=b"{nope", headers={"content-type": "application/json"}
        ),
        422,
    )
    error(
        acme.editor.post("/api/v1/models", content=b"x", headers={"content-type": "text/plain"}),
        422,
    )
    error(
        acme.editor.post(
            "/api/v1/runs", content=b"{nope", headers={"content-type": "application/json"}
        ),
        422,
    )


def test_missing_run_is_404(acme) -> None:
    error(acme.editor.post("/api/v1/models", json={"name": "m", "run_id": "f" * 32}), 404)
    error(acme.editor.post("/api/v1/models/m/versions", json={"run_id": "f" * 32}), 404)


def test_run_without_model_is_422(acme) -> None:
    run_id = new_run(acme.editor)
    error(acme.editor.post("/api/v1/models", json={"name": "m", "run_id": run_id}), 422)


@pytest.mark.parametrize(
    "token",
    [
        "WzFd",  # base64 of [1]
        "eyJvZmZzZXQiOiAtNX0=",  # {"offset": -5}
        "eyJvZmZzZXQiOiAiMTAifQ==",  # {"offset": "10"}
        "bm90IGpzb24=",  # not json
        "e30=",  # {}
    ],
)
def test_page_tokens_this_service_did_not_issue_are_422(acme, token) -> None:
    error(acme.viewer.get("/api/v1/models", params={"page_token": token}), 422, "VALIDATION_ERROR")
