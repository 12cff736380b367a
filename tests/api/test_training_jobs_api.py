"""The training jobs endpoints without an executor: jobs stay queued, so the limit, the
validation, the cancel of a queued job and another tenant's view are exact."""

from __future__ import annotations

import pytest

from api.helpers import TRAINING_JOB, error, ok
from conftest import ApiTenant, new_tenant_id


@pytest.fixture
def acme(api, services):
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("tj")).tenant_id)
    yield t
    t.close()


@pytest.fixture
def globex(api, services):
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("tk")).tenant_id)
    yield t
    t.close()


def test_submit_read_list_cancel_and_logs(acme) -> None:
    job = ok(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)
    assert job["status"] == "queued" and job["created_by"] == "editor-key"
    assert job["spec"]["evaluation"]["higher_is_better"] is True  # filled in
    assert ok(acme.viewer.get(f"/api/v1/training-jobs/{job['job_id']}")) == job
    listed = ok(acme.viewer.get("/api/v1/training-jobs", params={"status": "queued"}))
    assert [j["job_id"] for j in listed["items"]] == [job["job_id"]]
    assert ok(acme.viewer.get("/api/v1/training-jobs", params={"status": "failed"}))["items"] == []
    # A viewer may read, not submit or cancel.
    error(acme.viewer.post("/api/v1/training-jobs", json=TRAINING_JOB), 403)
    error(acme.viewer.post(f"/api/v1/training-jobs/{job['job_id']}/cancel"), 403)
    cancelled = ok(acme.editor.post(f"/api/v1/training-jobs/{job['job_id']}/cancel"))
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    logs = ok(acme.viewer.get(f"/api/v1/training-jobs/{job['job_id']}/logs"))
    assert [i["line"] for i in logs["items"]] == [
        "queued by editor-key",
        "cancelled by editor-key before it started",
    ]
    assert logs["next_after"] == logs["items"][-1]["seq"]
    more = ok(
        acme.viewer.get(
            f"/api/v1/training-jobs/{job['job_id']}/logs", params={"after": logs["next_after"]}
        )
    )
    assert more == {"items": [], "next_after": logs["next_after"]}


def test_pages_of_jobs(acme, services) -> None:
    for _ in range(3):  # queued then cancelled, to stay under the limit
        job = ok(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)
        ok(acme.editor.post(f"/api/v1/training-jobs/{job['job_id']}/cancel"))
    first = ok(acme.viewer.get("/api/v1/training-jobs", params={"limit": 2}))
    rest = ok(
        acme.viewer.get(
            "/api/v1/training-jobs", params={"limit": 2, "page_token": first["next_page_token"]}
        )
    )
    assert len(first["items"]) == 2 and len(rest["items"]) == 1
    assert rest["next_page_token"] is None


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model_name": "bad/name"}, "model_name"),
        ({"trainer": {"kind": "sklearn", "estimator": "os.system"}}, "trainer.estimator"),
        ({"data": {"kind": "table", "path": "../b/x.csv", "target": "y"}}, "data.path"),
        ({"resources": {"num_workers": 0}}, "resources.num_workers"),
        ({"evaluation": {"primary_metric": "rmse"}}, "evaluation.primary_metric"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_a_bad_job_is_a_422_naming_the_field(acme, patch, field) -> None:
    body = error(acme.editor.post("/api/v1/training-jobs", json={**TRAINING_JOB, **patch}), 422)
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field, body
    assert ok(acme.viewer.get("/api/v1/training-jobs"))["items"] == []


def test_not_json_and_not_an_object_are_422(acme) -> None:
    r = acme.editor.post(
        "/api/v1/training-jobs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    r = acme.editor.post("/api/v1/training-jobs", json=[1, 2])
    assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR"


def test_the_tenant_limit_is_a_429_with_a_clear_message(acme, globex, services) -> None:
    limit = services.settings.training_max_jobs
    for _ in range(limit):
        ok(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)
    body = error(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 429)
    assert body["code"] == "LIMIT_EXCEEDED"
    assert f"the limit is {limit}" in body["message"]
    assert body["details"] == {"limit": limit, "active": limit}
    # Another tenant's quota is its own.
    ok(globex.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)


def test_another_tenants_key_sees_nothing(acme, globex) -> None:
    job = ok(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)["job_id"]
    for method, path in (
        ("GET", f"/api/v1/training-jobs/{job}"),
        ("POST", f"/api/v1/training-jobs/{job}/cancel"),
        ("GET", f"/api/v1/training-jobs/{job}/logs"),
    ):
        assert error(globex.admin.request(method, path), 404)["code"] == "NOT_FOUND"
    assert ok(globex.admin.get("/api/v1/training-jobs"))["items"] == []
    assert ok(acme.viewer.get(f"/api/v1/training-jobs/{job}"))["status"] == "queued"
