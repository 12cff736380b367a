"""Signed versions over HTTP: a changed byte stops promotion and serving, once, with one
event; restored, both work again. The verification report, per tenant."""

from __future__ import annotations

from pathlib import Path

from api.helpers import error, ok, register
from matih_ml.registry.metadata import TAG_ARTIFACT_URI, TAG_SIGNATURE_DIGEST

STAGE = "/api/v1/models/churn/stage"
VERIFY = "/api/v1/models/churn/versions/1/verification"
RECORDS = {"records": [{"0": 0.1, "1": 0.2, "2": 0.3, "3": 0.4}]}


def _stored_model_file(services, tenant: str) -> Path:
    folder = Path(services.registry.version_tags(tenant, "churn", "1")[TAG_ARTIFACT_URI])
    return next(folder / n for n in ("model.pkl", "model.skops") if (folder / n).is_file())


def _integrity_events(client) -> list[dict]:
    feed = ok(client.get("/api/v1/events", params={"types": "MODEL_INTEGRITY_FAILED"}))
    return feed["items"]


def test_a_changed_byte_is_refused_at_promotion_and_serving_then_restored(
    acme, services, saved_sklearn_model
) -> None:
    register(acme.editor, saved_sklearn_model)
    ok(acme.admin.put("/api/v1/policy", json={"production": {"require_approval": False}}))
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "staging"}))
    stored = _stored_model_file(services, acme.tenant_id)
    original = stored.read_bytes()
    middle = len(original) // 2
    stored.write_bytes(
        original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :]
    )
    # Counted for this version only: the services are shared by the worker's session,
    # and other files' background loads move the total.
    cache = services.serving.cache
    loads = cache.loads_of(acme.tenant_id, "churn", "1")

    err = error(
        acme.editor.put(STAGE, json={"version": "1", "stage": "production"}),
        409,
        "MODEL_INTEGRITY_FAILED",
    )
    assert stored.name in err["message"]
    assert err["details"]["files"] == [stored.name]
    assert err["details"]["where"] == "promotion"
    assert ok(acme.viewer.get("/api/v1/models/churn"))["stage"] == "staging"
    served = acme.viewer.post("/api/v1/models/churn/predict?stage=staging", json=RECORDS)
    err = error(served, 409, "MODEL_INTEGRITY_FAILED")
    assert err["details"]["where"] == "serving" and err["details"]["files"] == [stored.name]
    # Asked again: still refused, still not loaded, and no second event.
    error(acme.viewer.post("/api/v1/models/churn/predict?version=1", json=RECORDS), 409)
    assert services.serving.cache.peek(acme.tenant_id, "churn", "1") is None
    assert cache.loads_of(acme.tenant_id, "churn", "1") == loads
    events = _integrity_events(acme.viewer)
    assert len(events) == 1
    data = events[0]["data"]
    assert (data["model"], data["version"], data["files"]) == ("churn", "1", [stored.name])
    assert (
        data["signature_digest"]
        == services.registry.version_tags(acme.tenant_id, "churn", "1")[TAG_SIGNATURE_DIGEST]
    )
    report = ok(acme.viewer.get(VERIFY))
    assert (report["status"], report["files"], report["promotable"]) == (
        "failed",
        [stored.name],
        False,
    )

    stored.write_bytes(original)
    assert ok(acme.viewer.get(VERIFY))["status"] == "verified"
    predicted = ok(acme.viewer.post("/api/v1/models/churn/predict?stage=staging", json=RECORDS))
    assert predicted["version"] == "1" and len(predicted["predictions"]) == 1
    assert cache.loads_of(acme.tenant_id, "churn", "1") == loads + 1
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "production"}))
    assert ok(acme.viewer.get("/api/v1/models/churn"))["stage"] == "production"
    assert len(_integrity_events(acme.viewer)) == 1


def test_the_verification_report_is_the_tenants_own(acme, globex, saved_sklearn_model) -> None:
    register(acme.editor, saved_sklearn_model)
    report = ok(acme.viewer.get(VERIFY))
    assert report["status"] == "verified" and report["promotable"] is True
    assert report["key_id"].startswith("ec-p256:")
    assert report["signature_digest"].startswith("sha256:")
    assert (report["reason"], report["files"]) == ("", [])
    error(globex.admin.get(VERIFY), 404, "NOT_FOUND")
    error(acme.viewer.get("/api/v1/models/churn/versions/9/verification"), 404, "NOT_FOUND")
    error(acme.viewer.get("/api/v1/models/churn/versions/x/verification"), 422)


def test_a_rollback_to_a_changed_version_is_refused(acme, services, saved_sklearn_model) -> None:
    """A rollback moves the earlier version into production: its files are checked as a
    promotion's are, and a changed one stays out (the current version keeps serving)."""
    ok(acme.admin.put("/api/v1/policy", json={"production": {"require_approval": False}}))
    for version in ("1", "2"):
        register(acme.editor, saved_sklearn_model)
        ok(acme.editor.put(STAGE, json={"version": version, "stage": "staging"}))
        ok(acme.editor.put(STAGE, json={"version": version, "stage": "production"}))
    stored = _stored_model_file(services, acme.tenant_id)  # version 1's
    original = stored.read_bytes()
    stored.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))

    err = error(
        acme.editor.post("/api/v1/models/churn/rollback", json={"reason": "v2 regressed"}),
        409,
        "MODEL_INTEGRITY_FAILED",
    )
    assert err["details"]["files"] == [stored.name] and err["details"]["where"] == "promotion"
    assert ok(acme.viewer.get("/api/v1/models/churn"))["current_version"] == "2"
    assert len(_integrity_events(acme.viewer)) == 1

    stored.write_bytes(original)
    rolled = ok(acme.editor.post("/api/v1/models/churn/rollback", json={"reason": "v2 regressed"}))
    assert rolled["current_version"] == "1" and rolled["stage"] == "production"
