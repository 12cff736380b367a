"""Tenant B's keys against tenant A's objects: every endpoint answers 404 or an
empty list, and nothing of A's changes. The route table is checked too, so a new
endpoint without a line here fails this test."""

from __future__ import annotations

import pytest

from api.helpers import TRAINING_JOB, ok, register, run_with_model
from conftest import ApiTenant, new_tenant_id
from matih_ml.api.app import create_app

BATCH_JOB = {
    "model": "churn",
    "input": {"path": "in.parquet"},
    "output": {"path": "out.parquet"},
}
# A's run read this dataset: another tenant's lineage query by it finds nothing.
LINEAGE_INPUT = {"name": "prepared", "digest": "md5:" + "ab" * 16, "uri": "s3://a/prepared.csv"}
# (method, path, body). {run}, {exp}, {key} are A's. Paths are the templates' order.
CALLS = [
    ("GET", "/api/v1/models", None),
    ("POST", "/api/v1/models", {"name": "stolen", "run_id": "{run}"}),
    ("GET", "/api/v1/models/churn", None),
    ("DELETE", "/api/v1/models/churn", None),
    ("POST", "/api/v1/models/churn/versions", {"run_id": "{run}"}),
    ("GET", "/api/v1/models/churn/versions", None),
    ("GET", "/api/v1/models/churn/versions/1", None),
    ("GET", "/api/v1/models/churn/versions/1/files", None),
    ("GET", "/api/v1/models/churn/versions/1/files/MLmodel", None),
    ("GET", "/api/v1/models/churn/versions/1/bom", None),
    ("GET", "/api/v1/models/churn/versions/1/verification", None),
    ("DELETE", "/api/v1/models/churn/versions/1", None),
    ("PUT", "/api/v1/models/churn/stage", {"version": "1", "stage": "staging"}),
    ("GET", "/api/v1/experiments", None),
    ("GET", "/api/v1/experiments/compare?run_ids={run}&metrics=accuracy", None),
    ("GET", "/api/v1/experiments/{exp}", None),
    ("GET", "/api/v1/experiments/{exp}/runs", None),
    ("POST", "/api/v1/runs/{run}/log-batch", {"metrics": [{"key": "accuracy", "value": 0}]}),
    ("POST", "/api/v1/runs/{run}/end", {"status": "KILLED"}),
    ("POST", "/api/v1/runs/{run}/metrics:batch", {"keys": ["accuracy"], "values": [0.0]}),
    ("GET", "/api/v1/runs/{run}", None),
    ("GET", "/api/v1/runs/{run}/metrics/accuracy/history", None),
    ("GET", "/api/v1/runs/{run}/artifacts", None),
    ("PUT", "/api/v1/runs/{run}/artifacts/model/MLmodel", b"overwritten"),
    ("GET", "/api/v1/runs/{run}/artifacts/model/MLmodel", None),
    ("POST", "/api/v1/runs/{run}/inputs", {"datasets": [LINEAGE_INPUT]}),
    ("GET", f"/api/v1/lineage?dataset={LINEAGE_INPUT['digest']}", None),
    ("GET", f"/api/v1/lineage?dataset={LINEAGE_INPUT['uri']}", None),
    ("GET", "/api/v1/keys", None),
    ("DELETE", "/api/v1/keys/{key}", None),
    ("GET", "/api/v1/models/churn/history", None),
    ("GET", "/api/v1/models/churn/production", None),
    ("POST", "/api/v1/models/churn/rollback", {"reason": "x"}),
    ("POST", "/api/v1/models/churn/versions/1/evaluations", {"kind": "ab", "passed": True}),
    ("GET", "/api/v1/models/churn/versions/1/evaluations", None),
    ("GET", "/api/v1/models/churn/versions/1/gates", None),
    ("POST", "/api/v1/models/churn/versions/1/approvals", {"comment": "x"}),
    ("GET", "/api/v1/models/churn/policy", None),
    ("PUT", "/api/v1/models/churn/policy", {}),
    ("DELETE", "/api/v1/models/churn/policy", None),
    ("GET", "/api/v1/approvals", None),
    ("GET", "/api/v1/approvals/{appr}", None),
    ("POST", "/api/v1/approvals/{appr}/approve", {"reason": ""}),
    ("POST", "/api/v1/approvals/{appr}/reject", {"reason": "no"}),
    ("GET", "/api/v1/events", None),
    ("GET", "/api/v1/webhooks", None),
    ("GET", "/api/v1/webhooks/{hook}", None),
    ("DELETE", "/api/v1/webhooks/{hook}", None),
    ("GET", "/api/v1/webhooks/{hook}/deliveries", None),
    ("POST", "/api/v1/models/churn/predict", {"records": [{"a": 1.0}]}),
    ("POST", "/api/v1/models/churn/predict:batch", {"records": [{"a": 1.0}]}),
    ("GET", "/api/v1/models/churn/serving", None),
    ("PUT", "/api/v1/models/churn/serving", {"mode": "shadow"}),
    ("GET", "/api/v1/models/churn/serving/summary", None),
    ("POST", "/api/v1/models/churn/serving/evidence", {"kind": "shadow"}),
    ("GET", "/api/v1/models/churn/monitoring", None),
    ("GET", "/api/v1/training-jobs", None),
    ("GET", "/api/v1/training-jobs/{job}", None),
    ("POST", "/api/v1/training-jobs/{job}/cancel", None),
    ("GET", "/api/v1/training-jobs/{job}/logs", None),
    ("POST", "/api/v1/batch-jobs", BATCH_JOB),  # A's model is not B's: 404
    ("GET", "/api/v1/batch-jobs", None),
    ("GET", "/api/v1/batch-jobs/{bjob}", None),
    ("POST", "/api/v1/batch-jobs/{bjob}/cancel", None),
    ("GET", "/api/v1/batch-jobs/{bjob}/logs", None),
]
# Endpoints that name no object of another tenant: they act in the caller's tenant.
OWN_TENANT_ONLY = {
    ("POST", "/api/v1/runs"),
    ("POST", "/api/v1/keys"),
    ("GET", "/api/v1/policy"),
    ("PUT", "/api/v1/policy"),
    ("DELETE", "/api/v1/policy"),
    ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/events/schemas"),
    ("POST", "/api/v1/training-jobs"),
    ("GET", "/api/v1/whoami"),
}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}


def _template(path: str) -> str:
    import re

    path = path.split("?")[0]
    path = path.replace("churn", "{model_id}").replace("/versions/1", "/versions/{version}")
    path = (
        path.replace("{run}", "{run_id}").replace("{exp}", "{exp_id}").replace("{key}", "{key_id}")
    )
    path = path.replace("/metrics/accuracy/", "/metrics/{key}/").replace("{appr}", "{approval_id}")
    path = path.replace("{hook}", "{webhook_id}").replace("{job}", "{job_id}")
    path = path.replace("{bjob}", "{job_id}")
    path = re.sub(r"/files/MLmodel$", "/files/{path}", path)
    return re.sub(r"/artifacts/model/MLmodel$", "/artifacts/{path}", path)


def test_every_api_route_is_covered(services) -> None:
    spec = create_app(services=services).openapi()
    routes = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    covered = {(m, _template(p)) for m, p, _ in CALLS} | OWN_TENANT_ONLY | PUBLIC
    assert routes == covered


@pytest.fixture(scope="module")
def acme(api, services):
    # One pair of tenants for the whole table: every call must leave A as it was,
    # so each case checks A's full state before and after.
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("iso")).tenant_id)
    yield t
    t.close()


@pytest.fixture(scope="module")
def globex(api, services):
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("isb")).tenant_id)
    yield t
    t.close()


@pytest.fixture(scope="module")
def a_state(acme, saved_sklearn_model):
    md = register(acme.editor, saved_sklearn_model)
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    ok(acme.editor.post(f"/api/v1/runs/{run_id}/inputs", json={"datasets": [LINEAGE_INPUT]}))
    key = ok(acme.admin.get("/api/v1/keys"))["items"][0]["key_id"]
    ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"}))
    appr = ok(acme.editor.post("/api/v1/models/churn/versions/1/approvals", json={}), 201)["id"]
    ok(
        acme.admin.put(
            "/api/v1/models/churn/policy", json={"production": {"require_approval": True}}
        )
    )
    # Nothing listens there: its deliveries stay pending, which is beside the point here.
    hook = ok(acme.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}), 201)
    # The session's app runs no jobs: this one stays queued, and unchanged.
    job = ok(acme.editor.post("/api/v1/training-jobs", json=TRAINING_JOB), 201)["job_id"]
    bjob = ok(acme.editor.post("/api/v1/batch-jobs", json=BATCH_JOB), 201)["job_id"]
    return {
        "model": md,
        "run": run,
        "key": key,
        "appr": appr,
        "hook": hook["id"],
        "job": job,
        "bjob": bjob,
    }


def _snapshot(acme, run_id: str, a_job: str, a_batch_job: str) -> dict:
    return {
        "model": ok(acme.viewer.get("/api/v1/models/churn")),
        "versions": ok(acme.viewer.get("/api/v1/models/churn/versions")),
        "run": ok(acme.viewer.get(f"/api/v1/runs/{run_id}")),
        "history": ok(acme.viewer.get(f"/api/v1/runs/{run_id}/metrics/accuracy/history")),
        "mlmodel": acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts/model/MLmodel").content,
        "keys": ok(acme.admin.get("/api/v1/keys")),
        "experiments": ok(acme.viewer.get("/api/v1/experiments")),
        "moves": ok(acme.viewer.get("/api/v1/models/churn/history")),
        "approvals": ok(acme.viewer.get("/api/v1/approvals")),
        "policy": ok(acme.viewer.get("/api/v1/models/churn/policy")),
        "evaluations": ok(acme.viewer.get("/api/v1/models/churn/versions/1/evaluations")),
        "gates": ok(acme.viewer.get("/api/v1/models/churn/versions/1/gates")),
        "events": ok(acme.viewer.get("/api/v1/events", params={"limit": 1000})),
        "webhooks": ok(acme.admin.get("/api/v1/webhooks")),
        "serving": ok(acme.viewer.get("/api/v1/models/churn/serving")),
        "jobs": ok(acme.viewer.get("/api/v1/training-jobs")),
        "job_logs": ok(acme.viewer.get(f"/api/v1/training-jobs/{a_job}/logs")),
        "batch_jobs": ok(acme.viewer.get("/api/v1/batch-jobs")),
        "batch_job_logs": ok(acme.viewer.get(f"/api/v1/batch-jobs/{a_batch_job}/logs")),
        "lineage": ok(acme.viewer.get("/api/v1/lineage", params={"dataset": LINEAGE_INPUT["uri"]})),
    }


@pytest.mark.parametrize(("method", "path", "body"), CALLS, ids=[f"{m} {p}" for m, p, _ in CALLS])
def test_another_tenants_key_gets_404_or_nothing(acme, globex, a_state, method, path, body):
    run_id = a_state["run"]["run_id"]
    exp_id = a_state["run"]["experiment_id"]
    before = _snapshot(acme, run_id, a_state["job"], a_state["bjob"])
    url = path.format(
        run=run_id,
        exp=exp_id,
        key=a_state["key"],
        appr=a_state["appr"],
        hook=a_state["hook"],
        job=a_state["job"],
        bjob=a_state["bjob"],
    )
    kwargs = {}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None:
        kwargs["json"] = {
            k: (v.format(run=run_id) if isinstance(v, str) else v) for k, v in body.items()
        }
    response = globex.admin.request(method, url, **kwargs)
    if response.status_code == 200:
        data = response.json()
        items = data.get("items", data.get("runs")) if isinstance(data, dict) else data
        # Globex's own list holds only globex's keys; nothing else of anyone.
        assert all(i.get("tenant_id", globex.tenant_id) == globex.tenant_id for i in items)
        if "keys" not in url:
            assert items == []
    else:
        assert response.status_code == 404, (response.status_code, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
    assert _snapshot(acme, run_id, a_state["job"], a_state["bjob"]) == before
    assert ok(globex.viewer.get("/api/v1/models"))["items"] == []
    assert ok(globex.viewer.get("/api/v1/events"))["items"] == []
