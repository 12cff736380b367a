"""What answers carry: API download addresses, never the server's folders or bucket URIs;
and a registration says whether it created the version (201) or found it (200)."""

from __future__ import annotations

import re

import pytest

from api.helpers import TRAINING_JOB, error, ok, run_with_model
from matih_ml.api.app import create_app

# A value for each path parameter of a GET route; {path} differs by route (see below).
_PARAMS = {"model_id": "churn", "version": "1", "key": "accuracy"}


def _register(client, run_id: str, name: str = "churn", status: int = 201) -> dict:
    return ok(client.post("/api/v1/models", json={"name": name, "run_id": run_id}), status)


def test_registering_a_run_again_answers_200_and_says_it_existed(acme, saved_sklearn_model):
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    first = _register(acme.editor, run_id)
    assert (first["registered_version"], first["created"]) == ("1", True)
    again = _register(acme.editor, run_id, status=200)
    assert (again["registered_version"], again["created"]) == ("1", False)
    assert again["versions"] == ["1"]
    # The versions route says the same, and a new run still makes a new version.
    url = "/api/v1/models/churn/versions"
    same = ok(acme.editor.post(url, json={"run_id": run_id}), 200)
    assert (same["version"], same["created"]) == ("1", False)
    other = ok(
        acme.editor.post(url, json={"run_id": run_with_model(acme.editor, saved_sklearn_model)}),
        201,
    )
    assert (other["version"], other["created"]) == ("2", True)
    # One MODEL_REGISTERED per version created, none for the repeats.
    events = ok(acme.viewer.get("/api/v1/events", params={"types": "MODEL_REGISTERED"}))["items"]
    assert [e["data"]["version"] for e in events] == ["1", "2"]


def test_answers_carry_api_addresses_that_download_the_files(acme, saved_sklearn_model):
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    md = _register(acme.editor, run_id)
    assert md["artifact_uri"] == "/api/v1/models/churn/versions/1/files"
    version = ok(acme.viewer.get("/api/v1/models/churn/versions/1"))
    assert version["artifact_uri"] == "/api/v1/models/churn/versions/1/files"
    assert version["source"] == f"/api/v1/runs/{run_id}/artifacts?path=model"
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    assert run["artifact_uri"] == f"/api/v1/runs/{run_id}/artifacts"
    exp = ok(acme.viewer.get(f"/api/v1/experiments/{run['experiment_id']}"))
    assert exp["runs_url"] == f"/api/v1/experiments/{run['experiment_id']}/runs"
    assert "artifact_location" not in exp
    ok(acme.viewer.get(exp["runs_url"]))

    # The version's listing and a file from it, as a client follows the address.
    files = {f["path"]: f for f in ok(acme.viewer.get(version["artifact_uri"]))}
    assert "MLmodel" in files and not files["MLmodel"]["is_dir"]
    mlmodel = acme.viewer.get(f"{version['artifact_uri']}/MLmodel")
    assert mlmodel.status_code == 200
    assert mlmodel.content == (saved_sklearn_model / "MLmodel").read_bytes()
    assert "filename*=UTF-8''MLmodel" in mlmodel.headers["content-disposition"]
    assert "model_card.md" in files
    # The source address lists the run's model folder.
    listed = {f["path"] for f in ok(acme.viewer.get(version["source"]))}
    assert "model/MLmodel" in listed


def test_version_files_refuse_paths_out_of_the_folder_and_folders(acme, saved_sklearn_model):
    _register(acme.editor, run_with_model(acme.editor, saved_sklearn_model))
    base = "/api/v1/models/churn/versions/1/files"
    for bad in ("../1/MLmodel", "%2e%2e/MLmodel", "a/../../x"):
        r = acme.viewer.get(f"{base}/{bad}")
        assert r.status_code in (404, 422), (bad, r.status_code, r.text)
        assert set(r.json()) == {"error"}
    error(acme.viewer.get(base, params={"path": "../.."}), 422)
    error(acme.viewer.get(f"{base}/no-such-file"), 404, "NOT_FOUND")
    error(acme.viewer.get("/api/v1/models/churn/versions/9/files"), 404, "NOT_FOUND")


def test_version_files_never_follow_a_link_out_of_the_folder(acme, saved_sklearn_model, services):
    # A link can only get there by a way in we do not know of; if one does, it is not served.
    md = _register(acme.editor, run_with_model(acme.editor, saved_sklearn_model))
    folder = services.registry.get_version(acme.tenant_id, "churn", md["registered_version"])
    from pathlib import Path

    link = Path(folder.artifact_uri) / "elsewhere"
    link.symlink_to(services.settings.data_dir.resolve())
    try:
        error(acme.viewer.get("/api/v1/models/churn/versions/1/files/elsewhere/matih.db"), 404)
        error(
            acme.viewer.get("/api/v1/models/churn/versions/1/files", params={"path": "elsewhere"}),
            404,
        )
    finally:
        link.unlink()


def _get_paths(services) -> list[str]:
    spec = create_app(services=services).openapi()
    return [path for path, ops in spec["paths"].items() if "get" in ops]


def test_no_answer_names_the_servers_folders(acme, saved_sklearn_model, services, settings):
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    answers = [acme.editor.post("/api/v1/models", json={"name": "churn", "run_id": run_id})]
    answers.append(acme.editor.post("/api/v1/models", json={"name": "churn", "run_id": run_id}))
    answers.append(
        acme.editor.post(
            "/api/v1/models/churn/versions",
            json={"run_id": run_with_model(acme.editor, saved_sklearn_model)},
        )
    )
    answers.append(
        acme.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"})
    )
    answers.append(acme.editor.post("/api/v1/models/churn/versions/1/approvals", json={}))
    job = ok(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)
    hook = ok(acme.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}), 201)
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    values = {
        **_PARAMS,
        "run_id": run_id,
        "exp_id": run["experiment_id"],
        "job_id": job["job_id"],
        "webhook_id": hook["id"],
        "approval_id": ok(acme.viewer.get("/api/v1/approvals"))["items"][0]["id"],
        "key_id": ok(acme.admin.get("/api/v1/keys"))["items"][0]["key_id"],
    }
    queries = {"/api/v1/experiments/compare": {"run_ids": run_id, "metrics": "accuracy"}}
    asked = 0
    for template in _get_paths(services):
        path = template
        if "{path}" in path:
            path = path.replace("{path}", "model/MLmodel" if "/runs/" in path else "MLmodel")
        missing = set(re.findall(r"{(\w+)}", path)) - set(values)
        assert not missing, f"give {template} a value for {missing}"
        url = path.format(**values)
        for params in (
            queries.get(template, {}),
            {"with_card": "true"} if template.endswith("{version}") else None,
        ):
            if params is None:
                continue
            answers.append(acme.admin.get(url, params=params))
            asked += 1
    answers.append(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts", params={"path": "model"}))
    answers.append(acme.viewer.get("/api/v1/models/churn/versions/1/files/nothing-here"))
    assert asked >= 30
    forbidden = {
        str(settings.data_dir),
        str(settings.data_dir.resolve()),
        settings.artifact_root,
        settings.tracking_uri,
    }
    for r in answers:
        assert r.status_code < 500, (r.request.url, r.text)
        body = r.content.decode("utf-8", errors="replace")
        for secret in forbidden:
            assert secret not in body, (str(r.request.url), secret, body[:2000])
        # No file: URI or absolute temporary folder either.
        assert "file://" not in body, (str(r.request.url), body[:2000])


@pytest.mark.parametrize("field", ["artifact_uri", "source"])
def test_version_addresses_are_relative_api_paths(acme, saved_sklearn_model, field):
    _register(acme.editor, run_with_model(acme.editor, saved_sklearn_model))
    for v in ok(acme.viewer.get("/api/v1/models/churn/versions"))["items"]:
        assert v[field].startswith("/api/v1/")
