"""The lifecycle over HTTP: gates, four eyes, forcing, history, time, rollback, policies."""

from datetime import UTC, datetime

import pytest

from api.helpers import error, ok, register, run_with_model

STAGE = "/api/v1/models/churn/stage"


def _two_versions(acme, saved_sklearn_model):
    register(acme.editor, saved_sklearn_model)
    run2 = run_with_model(acme.editor, saved_sklearn_model)
    ok(acme.editor.post("/api/v1/models/churn/versions", json={"run_id": run2}), 201)


def test_gate_refusal_is_409_with_reasons_and_changes_nothing(acme, saved_sklearn_model):
    register(acme.editor, saved_sklearn_model)
    ok(
        acme.admin.put(
            "/api/v1/policy",
            json={
                "staging": {"required_metrics": [{"metric": "accuracy", "op": ">=", "value": 0.95}]}
            },
        )
    )
    err = error(
        acme.editor.put(STAGE, json={"version": "1", "stage": "staging"}), 409, "GATE_FAILED"
    )
    assert err["details"]["gate"] == "staging"
    assert err["details"]["reasons"] == ["accuracy 0.9 is not >= 0.95"]
    assert ok(acme.viewer.get("/api/v1/models/churn"))["stage"] == "development"
    assert ok(acme.viewer.get("/api/v1/models/churn/history"))["items"] == []
    gates = ok(acme.viewer.get("/api/v1/models/churn/versions/1/gates"))["items"]
    assert [(g["gate"], g["passed"]) for g in gates] == [("staging", False)]
    # Conflicting moves are 409 CONFLICT, bad stages 422.
    error(acme.editor.put(STAGE, json={"version": "1", "stage": "production"}), 409, "CONFLICT")
    error(acme.editor.put(STAGE, json={"version": "1", "stage": "live"}), 422)


def test_approval_flow_with_four_eyes(acme, saved_sklearn_model) -> None:
    register(acme.editor, saved_sklearn_model)
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "staging"}))
    error(acme.editor.put(STAGE, json={"version": "1", "stage": "production"}), 409, "GATE_FAILED")
    # An admin who asks cannot approve their own request either.
    own = ok(
        acme.admin.post("/api/v1/models/churn/versions/1/approvals", json={"comment": "mine"}), 201
    )
    err = error(acme.admin.post(f"/api/v1/approvals/{own['id']}/approve", json={}), 403)
    assert "four eyes" in err["message"]
    ok(acme.approver.post(f"/api/v1/approvals/{own['id']}/reject", json={"reason": "wait"}))
    req = ok(acme.editor.post("/api/v1/models/churn/versions/1/approvals", json={}), 201)
    pending = ok(acme.viewer.get("/api/v1/approvals", params={"status": "pending"}))["items"]
    assert [a["id"] for a in pending] == [req["id"]]
    error(acme.editor.post(f"/api/v1/approvals/{req['id']}/approve", json={}), 403)
    error(acme.approver.post(f"/api/v1/approvals/{req['id']}/reject", json={}), 422)
    done = ok(acme.approver.post(f"/api/v1/approvals/{req['id']}/approve", json={}))
    assert (done["status"], done["decided_by"]) == ("approved", "approver-key")
    md = ok(acme.editor.put(STAGE, json={"version": "1", "stage": "production"}))
    assert md["stage"] == "production"
    assert ok(acme.viewer.get(f"/api/v1/approvals/{req['id']}"))["status"] == "applied"
    error(acme.viewer.get("/api/v1/approvals/999999"), 404)


def test_forcing_is_for_admins_with_a_reason(acme, saved_sklearn_model) -> None:
    register(acme.editor, saved_sklearn_model)
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "staging"}))
    force = {"version": "1", "stage": "production", "force": True}
    error(acme.editor.put(STAGE, json={**force, "reason": "x"}), 403)
    error(acme.admin.put(STAGE, json=force), 422)
    ok(acme.admin.put(STAGE, json={**force, "reason": "incident 42"}))
    last = ok(acme.viewer.get("/api/v1/models/churn/history"))["items"][-1]
    assert (last["to_stage"], last["forced"], last["reason"], last["actor"]) == (
        "production",
        True,
        "incident 42",
        "admin-key",
    )


def test_history_production_at_and_rollback(acme, saved_sklearn_model) -> None:
    _two_versions(acme, saved_sklearn_model)
    ok(acme.admin.put("/api/v1/policy", json={"production": {"require_approval": False}}))
    error(acme.editor.post("/api/v1/models/churn/rollback", json={}), 409)
    for v in ("1", "2"):
        ok(acme.editor.put(STAGE, json={"version": v, "stage": "staging"}))
        ok(
            acme.editor.put(
                STAGE, json={"version": v, "stage": "production", "reason": f"ship v{v}"}
            )
        )
    between = datetime.now(UTC).isoformat()
    md = ok(acme.editor.post("/api/v1/models/churn/rollback", json={"reason": "bad v2"}))
    assert (md["current_version"], md["stage"]) == ("1", "production")
    now = ok(acme.viewer.get("/api/v1/models/churn/production"))
    assert now["version"] == "1"
    then = ok(acme.viewer.get("/api/v1/models/churn/production", params={"at": between}))
    assert then["version"] == "2"
    # The same instant written in another zone gives the same answer.
    from datetime import timedelta, timezone

    shifted = datetime.fromisoformat(between).astimezone(timezone(timedelta(hours=5)))
    again = ok(
        acme.viewer.get("/api/v1/models/churn/production", params={"at": shifted.isoformat()})
    )
    assert again["version"] == "2"
    early = ok(
        acme.viewer.get("/api/v1/models/churn/production", params={"at": "2000-01-01T00:00:00Z"})
    )
    assert early["version"] is None
    error(acme.viewer.get("/api/v1/models/churn/production", params={"at": "yesterday"}), 422)
    moves = ok(acme.viewer.get("/api/v1/models/churn/history"))["items"]
    assert [(m["version"], m["from_stage"], m["to_stage"]) for m in moves][-2:] == [
        ("2", "production", "development"),
        ("1", "archived", "production"),
    ]
    assert moves[-1]["reason"] == "bad v2"


def test_evaluations_feed_the_production_gate(acme, saved_sklearn_model) -> None:
    register(acme.editor, saved_sklearn_model)
    ok(
        acme.admin.put(
            "/api/v1/models/churn/policy",
            json={"production": {"require_evaluation": True, "require_approval": False}},
        )
    )
    assert ok(acme.viewer.get("/api/v1/models/churn/policy"))["source"] == "model"
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "staging"}))
    error(acme.editor.put(STAGE, json={"version": "1", "stage": "production"}), 409)
    e = ok(
        acme.editor.post(
            "/api/v1/models/churn/versions/1/evaluations",
            json={"kind": "shadow", "passed": True, "metrics": {"agreement": 0.98}},
        ),
        201,
    )
    assert e["recorded_by"] == "editor-key"
    error(
        acme.editor.post(
            "/api/v1/models/churn/versions/1/evaluations", json={"kind": "canary", "passed": True}
        ),
        422,
    )
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "production"}))
    assert len(ok(acme.viewer.get("/api/v1/models/churn/versions/1/evaluations"))["items"]) == 1
    acme.admin.delete("/api/v1/models/churn/policy")
    assert ok(acme.viewer.get("/api/v1/models/churn/policy"))["source"] == "default"


@pytest.mark.parametrize(
    "bad",
    [
        {"staging": {"required_metrics": [{"metric": "a", "op": "~", "value": 1}]}},
        {"staging": {"max_regression": -1}},
        {"production": {"evaluation_kinds": ["canary"]}},
        {"unknown": {}},
    ],
)
def test_bad_policies_are_422(acme, bad) -> None:
    error(acme.admin.put("/api/v1/policy", json=bad), 422)
    assert ok(acme.viewer.get("/api/v1/policy"))["source"] == "default"


def test_register_stage_setting_lands_new_versions_through_the_gates(
    services, saved_sklearn_model, acme
):
    import copy
    from dataclasses import replace

    from conftest import LiveServer
    from matih_ml.api.app import create_app

    settings = services.settings.model_copy(update={"register_stage": "staging"})
    # The composition root gives the lifecycle its landing stage from the settings.
    lifecycle = copy.copy(services.lifecycle)
    lifecycle.landing_stage = settings.register_stage
    server = LiveServer(
        create_app(services=replace(services, settings=settings, lifecycle=lifecycle))
    )
    try:
        import httpx

        with httpx.Client(
            base_url=server.url,
            timeout=60,
            headers={"Authorization": f"Bearer {acme.keys['editor']}"},
        ) as c:
            run_id = run_with_model(c, saved_sklearn_model)
            for status in (201, 200):  # a pipeline re-running is safe: same version, same stage
                md = ok(c.post("/api/v1/models", json={"name": "churn", "run_id": run_id}), status)
                assert (md["versions"], md["stage"]) == (["1"], "staging")
            ok(
                acme.admin.put(
                    "/api/v1/policy",
                    json={"staging": {"required_metrics": [{"metric": "accuracy", "value": 0.99}]}},
                )
            )
            run2 = run_with_model(c, saved_sklearn_model)
            err = error(
                c.post("/api/v1/models/churn/versions", json={"run_id": run2}), 409, "GATE_FAILED"
            )
            assert "accuracy 0.9 is not >= 0.99" in err["message"]
        # It is registered, and stays in development until it passes.
        assert ok(acme.viewer.get("/api/v1/models/churn/versions/2"))["stage"] == "development"
    finally:
        server.stop()


def test_the_version_list_carries_the_stage_aliases(acme, saved_sklearn_model) -> None:
    _two_versions(acme, saved_sklearn_model)
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "staging"}))
    ok(acme.editor.put(STAGE, json={"version": "2", "stage": "staging"}))
    listed = ok(acme.viewer.get("/api/v1/models/churn/versions"))["items"]
    aliases = {v["version"]: v["aliases"] for v in listed}
    single = {
        n: ok(acme.viewer.get(f"/api/v1/models/churn/versions/{n}"))["aliases"] for n in aliases
    }
    assert aliases == single
    assert "staging" in aliases["2"] and "staging" not in aliases["1"]


def test_four_eyes_compares_owners_not_key_names(api, acme, services, saved_sklearn_model):
    import httpx

    _two_versions(acme, saved_sklearn_model)
    run3 = run_with_model(acme.editor, saved_sklearn_model)
    ok(acme.editor.post("/api/v1/models/churn/versions", json={"run_id": run3}), 201)
    for v in ("1", "2", "3"):
        ok(acme.editor.put(STAGE, json={"version": v, "stage": "staging"}))

    def client(name: str, owner: str = "") -> httpx.Client:
        key = services.api_keys.create(acme.tenant_id, "admin", name, owner=owner).secret
        return httpx.Client(base_url=api.url, timeout=60, headers={"X-API-Key": key})

    alice_laptop, alice_ci, bob = (
        client("alice-laptop", "alice"),
        client("alice-ci", "alice"),
        client("bob", "bob"),
    )
    first, second = client(""), client("")  # no names, no owners: two keys, two owners
    try:
        mine = ok(alice_laptop.post("/api/v1/models/churn/versions/1/approvals", json={}), 201)
        theirs = ok(bob.post("/api/v1/models/churn/versions/2/approvals", json={}), 201)
        assert (mine["requested_by"], theirs["requested_by"]) == ("alice", "bob")
        # One owner's second key, under another name, is still the requester.
        for verb, body in (("approve", {}), ("reject", {"reason": "mine anyway"})):
            r = alice_ci.post(f"/api/v1/approvals/{mine['id']}/{verb}", json=body)
            assert "four eyes" in error(r, 403, "FORBIDDEN")["message"]
        # Two owners approve each other's requests.
        done = ok(bob.post(f"/api/v1/approvals/{mine['id']}/approve", json={}))
        assert (done["status"], done["decided_by"]) == ("approved", "bob")
        done = ok(alice_ci.post(f"/api/v1/approvals/{theirs['id']}/approve", json={}))
        assert done["decided_by"] == "alice"
        # Two unnamed keys are two people, not one `admin-key`.
        req = ok(first.post("/api/v1/models/churn/versions/3/approvals", json={}), 201)
        ok(second.post(f"/api/v1/approvals/{req['id']}/approve", json={}))
        assert (
            ok(alice_laptop.put(STAGE, json={"version": "1", "stage": "production"}))["stage"]
            == "production"
        )
    finally:
        for c in (alice_laptop, alice_ci, bob, first, second):
            c.close()
