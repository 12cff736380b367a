"""Each role against each kind of operation: one table, checked in one place."""

import pytest

from api.helpers import error, ok, register, run_with_model

# (method, path, body, permission needed). {run} is a run of the tenant.
OPERATIONS = [
    ("GET", "/api/v1/models", None, "read"),
    ("GET", "/api/v1/models/churn", None, "read"),
    ("GET", "/api/v1/models/churn/versions", None, "read"),
    ("GET", "/api/v1/models/churn/versions/1/files", None, "read"),
    ("GET", "/api/v1/models/churn/versions/1/files/MLmodel", None, "read"),
    ("GET", "/api/v1/models/churn/versions/1/bom", None, "read"),
    ("GET", "/api/v1/models/churn/versions/1/verification", None, "read"),
    ("GET", "/api/v1/experiments", None, "read"),
    ("GET", "/api/v1/runs/{run}", None, "read"),
    ("POST", "/api/v1/runs", {"experiment_name": "x"}, "write"),
    ("POST", "/api/v1/runs/{run}/log-batch", {"metrics": [{"key": "a", "value": 1}]}, "write"),
    ("GET", "/api/v1/lineage?dataset=md5:" + "ab" * 16, None, "read"),
    (
        "POST",
        "/api/v1/runs/{run}/inputs",
        {"datasets": [{"name": "d", "digest": "md5:" + "ab" * 16, "uri": "s3://b/d"}]},
        "write",
    ),
    ("POST", "/api/v1/models", {"name": "other", "run_id": "{run}"}, "write"),
    ("POST", "/api/v1/models/churn/versions", {"run_id": "{run}"}, "write"),
    ("PUT", "/api/v1/models/churn/stage", {"version": "1", "stage": "staging"}, "write"),
    ("PUT", "/api/v1/runs/{run}/artifacts/notes.txt", b"x", "write"),
    ("GET", "/api/v1/keys", None, "admin"),
    ("POST", "/api/v1/keys", {"role": "viewer"}, "admin"),
    ("GET", "/api/v1/approvals", None, "read"),
    ("GET", "/api/v1/models/churn/history", None, "read"),
    (
        "POST",
        "/api/v1/models/churn/versions/1/evaluations",
        {"kind": "ab", "passed": True},
        "write",
    ),
    ("POST", "/api/v1/approvals/{appr}/approve", {"reason": "ok"}, "approve"),
    ("PUT", "/api/v1/policy", {"production": {"require_approval": True}}, "admin"),
    (
        "PUT",
        "/api/v1/models/churn/stage",
        {"version": "1", "stage": "development", "force": True, "reason": "x"},
        "admin",
    ),
    ("DELETE", "/api/v1/models/churn/versions/1", None, "admin"),
    ("DELETE", "/api/v1/models/churn", None, "admin"),
]
GRANTS = {
    "viewer": {"read"},
    "editor": {"read", "write"},
    "approver": {"read", "approve"},
    "admin": {"read", "write", "approve", "admin"},
}


@pytest.mark.parametrize("role", list(GRANTS))
def test_each_role_may_do_exactly_what_it_is_granted(acme, saved_sklearn_model, role) -> None:
    register(acme.editor, saved_sklearn_model)
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"}))
    appr = ok(acme.editor.post("/api/v1/models/churn/versions/1/approvals", json={}), 201)["id"]
    client = getattr(acme, role)
    for method, path, body, needed in OPERATIONS:
        kwargs = {}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = {
                k: v.format(run=run_id) if isinstance(v, str) else v for k, v in body.items()
            }
        r = client.request(method, path.format(run=run_id, appr=appr), **kwargs)
        if needed in GRANTS[role]:
            assert r.status_code < 400, (role, method, path, r.text)
        else:
            err = error(r, 403, "FORBIDDEN")
            named = err["details"]["permission"]
            assert named not in GRANTS[role] and named in ("read", "write", "approve", "admin")
    # A refused write changed nothing.
    if role in ("viewer", "approver"):
        assert ok(acme.viewer.get("/api/v1/models/churn"))["stage"] == "staging"
        assert ok(acme.viewer.get("/api/v1/runs/" + run_id))["metrics"] == {"accuracy": 0.9}
