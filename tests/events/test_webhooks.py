"""Lifecycle events to a real HTTP receiver on loopback: what arrives is what the catalog
says, signed and verifiable, in order per model; a receiver that is down gets
everything once it is back; one that never comes back sends its events to dead-letter,
and replay delivers them."""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from api.helpers import error, ok
from conftest import ApiTenant, LiveServer, embedded_settings, new_tenant_id
from events.receiver import Receiver
from matih_ml.api.app import create_app
from matih_ml.events.catalog import DATA, Event, EventType
from matih_ml.events.signing import verify
from matih_ml.services import build_services


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _upload(client, sk_model) -> str:
    r = client.post(
        "/api/v1/models",
        data={"name": "churn", "framework": "sklearn"},
        files={"file": ("m.pkl", pickle.dumps(sk_model))},
    )
    return ok(r, 201)["registered_version"]


def _to_production(t: ApiTenant, version: str) -> None:
    stage = "/api/v1/models/churn/stage"
    ok(t.editor.put(stage, json={"version": version, "stage": "staging"}))
    url = f"/api/v1/models/churn/versions/{version}/approvals"
    approval = ok(t.editor.post(url, json={"comment": "ship it"}), 201)
    ok(t.approver.post(f"/api/v1/approvals/{approval['id']}/approve", json={"reason": "ok"}))
    ok(t.editor.put(stage, json={"version": version, "stage": "production"}))


def _check_against_catalog(event: dict) -> None:
    Event.model_validate(event)
    DATA[EventType(event["type"])].model_validate(event["data"])


def _serve(tenant, version: str) -> None:
    """Serving's first answer from a version is what publishes MODEL_DEPLOYED."""
    deadline = time.monotonic() + 5
    while True:
        record = {str(i): 0.5 for i in range(4)}
        body = ok(tenant.viewer.post("/api/v1/models/churn/predict", json={"records": [record]}))
        if body["version"] == version or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert body["version"] == version


def test_lifecycle_events_arrive_signed_in_order_as_the_catalog_says(
    acme, globex, receiver, sk_model
) -> None:
    hook = ok(acme.admin.post("/api/v1/webhooks", json={"url": receiver.url}), 201)
    assert hook["secret"].startswith("whsec_")
    # A second webhook that wants deployments only (nothing listens: its queue is what counts).
    only = {"url": "http://127.0.0.1:9/deployed", "event_types": ["MODEL_DEPLOYED"]}
    filtered = ok(acme.admin.post("/api/v1/webhooks", json=only), 201)
    run_id = ok(acme.editor.post("/api/v1/runs", json={"experiment_name": "train"}), 201)["run_id"]
    ok(acme.editor.post(f"/api/v1/runs/{run_id}/end", json={}))
    v1 = _upload(acme.editor, sk_model)
    _to_production(acme, v1)
    _serve(acme, v1)
    v2 = _upload(acme.editor, sk_model)
    _to_production(acme, v2)
    _serve(acme, v2)
    _serve(acme, v2)  # a version that goes on serving is announced once
    ok(acme.editor.post("/api/v1/models/churn/rollback", json={"reason": "v2 misbehaves"}))
    _serve(acme, v1)
    assert acme.admin.delete(f"/api/v1/models/churn/versions/{v2}").status_code == 204

    feed = ok(acme.viewer.get("/api/v1/events", params={"limit": 1000}))["items"]
    receiver.wait_for(lambda: len(receiver.unique()) >= len(feed))
    got = receiver.unique()
    assert set(got) == {e["id"] for e in feed}
    assert all(got[e["id"]] == e for e in feed)  # byte for byte the feed's event

    for headers, body in receiver.received:
        assert verify(hook["secret"], headers, body)
        assert not verify(hook["secret"], headers, body + b" ")
        assert headers["webhook-id"] == json.loads(body)["id"]
        _check_against_catalog(json.loads(body))

    # Per model, in sequence order, exactly these events.
    arrived = [e for e in receiver.events() if e["subject"] == "churn"]
    seqs = [e["sequence"] for e in arrived]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    promote = [
        "MODEL_STAGE_CHANGED",
        "APPROVAL_REQUESTED",
        "APPROVAL_APPROVED",
    ]
    assert [e["type"] for e in arrived] == [
        "MODEL_REGISTERED",
        *promote,
        "MODEL_STAGE_CHANGED",
        "MODEL_DEPLOYED",
        "MODEL_REGISTERED",
        *promote,
        "MODEL_STAGE_CHANGED",  # v1 leaves production
        "MODEL_STAGE_CHANGED",  # v2 enters it
        "MODEL_DEPLOYED",
        "MODEL_STAGE_CHANGED",  # rollback: v2 out
        "MODEL_STAGE_CHANGED",  # v1 back
        "MODEL_DEPLOYED",
        "MODEL_VERSION_DELETED",
    ]
    moves = [
        (e["data"]["version"], e["data"]["from_stage"], e["data"]["to_stage"])
        for e in arrived
        if e["type"] == "MODEL_STAGE_CHANGED"
    ]
    assert moves[-2:] == [(v2, "production", "development"), (v1, "archived", "production")]
    deployed = [e["data"] for e in arrived if e["type"] == "MODEL_DEPLOYED"]
    assert [(d["version"], d["replaced"]) for d in deployed] == [(v1, None), (v2, v1), (v1, v2)]
    assert {(d["stage"], d["actor"]) for d in deployed} == {("production", "serving")}
    assert arrived[0]["data"]["artifact_uri"] == f"/api/v1/models/churn/versions/{v1}/files"
    training = [e for e in receiver.events() if e["subject"] == f"run/{run_id}"]
    assert [e["type"] for e in training] == ["MODEL_TRAINING_STARTED", "MODEL_TRAINING_COMPLETED"]
    assert training[1]["data"]["status"] == "FINISHED"
    # Sequences are 1, 2, 3... for the tenant, without gaps.
    assert sorted(e["sequence"] for e in feed) == list(range(1, len(feed) + 1))

    deliveries = ok(acme.admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries"))["items"]
    assert {d["state"] for d in deliveries} == {"delivered"}
    assert len(deliveries) == len(feed)
    wanted = ok(acme.admin.get(f"/api/v1/webhooks/{filtered['id']}/deliveries"))["items"]
    assert [d["event_type"] for d in wanted] == ["MODEL_DEPLOYED"] * 3
    # The other tenant sees none of it.
    assert ok(globex.viewer.get("/api/v1/events"))["items"] == []
    error(globex.admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries"), 404, "NOT_FOUND")
    assert ok(globex.admin.get("/api/v1/webhooks"))["items"] == []


def test_feed_pages_with_a_cursor_and_filters_by_type(acme, sk_model) -> None:
    _upload(acme.editor, sk_model)
    ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"}))
    first = ok(acme.viewer.get("/api/v1/events", params={"limit": 1}))
    assert [e["type"] for e in first["items"]] == ["MODEL_REGISTERED"]
    rest = ok(acme.viewer.get("/api/v1/events", params={"after": first["cursor"]}))
    assert [e["type"] for e in rest["items"]] == ["MODEL_STAGE_CHANGED"]
    only = ok(acme.viewer.get("/api/v1/events", params={"types": "MODEL_STAGE_CHANGED"}))
    assert [e["sequence"] for e in only["items"]] == [2]
    error(acme.viewer.get("/api/v1/events", params={"types": "NOPE"}), 422)
    schemas = ok(acme.viewer.get("/api/v1/events/schemas"))
    assert set(schemas["types"]) == {t.value for t in EventType}


def test_webhook_input_is_checked(acme) -> None:
    for body in (
        {"url": "ftp://x/y"},
        {"url": "http://user:pw@host/"},
        {"url": "not a url"},
        {"url": "http://h/", "event_types": ["NOT_A_TYPE"]},
        {"url": "http://h/", "extra": 1},
    ):
        error(acme.admin.post("/api/v1/webhooks", json=body), 422)
    error(acme.editor.post("/api/v1/webhooks", json={"url": "http://h/"}), 403)
    assert ok(acme.admin.get("/api/v1/webhooks"))["items"] == []


# ---------------------------------------------------------------- outages


@pytest.fixture
def fast(tmp_path):
    """A service of its own whose dispatcher retries within tenths of a second."""
    settings = embedded_settings(tmp_path / "data").model_copy(
        update={
            "events_backoff_s": 0.05,
            "events_backoff_max_s": 0.2,
            "events_max_attempts": 4,
            "events_poll_s": 0.05,
        }
    )
    services = build_services(settings)
    server = LiveServer(create_app(services=services))
    tenant = ApiTenant(
        server, services, services.tenants.create_tenant(new_tenant_id("ev")).tenant_id
    )
    yield services, tenant
    tenant.close()
    server.stop()
    services.db.dispose()


def test_a_receiver_down_for_a_while_gets_every_event_once_back(fast, receiver, sk_model) -> None:
    services, t = fast
    # Down "for a while": many quick retries, none of them the last.
    services.dispatcher.policy = replace(services.dispatcher.policy, max_attempts=10_000)
    hook = ok(t.admin.post("/api/v1/webhooks", json={"url": receiver.url}), 201)
    receiver.stop()
    _upload(t.editor, sk_model)
    ok(t.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"}))
    deliveries = f"/api/v1/webhooks/{hook['id']}/deliveries"

    def retried() -> bool:
        items = ok(t.admin.get(deliveries))["items"]  # newest first
        return len(items) == 2 and items[1]["attempts"] >= 3 and bool(items[1]["last_error"])

    receiver.wait_for(retried, timeout=30)
    later, first = ok(t.admin.get(deliveries))["items"]
    assert (first["state"], later["state"]) == ("pending", "pending")
    # The model's second event waits behind its first: the order holds.
    assert later["attempts"] == 0
    receiver.start()
    receiver.wait_for(lambda: len(receiver.unique()) == 2, timeout=30)
    receiver.wait_for(
        lambda: {d["state"] for d in ok(t.admin.get(deliveries))["items"]} == {"delivered"}
    )
    assert [e["type"] for e in receiver.unique().values()] == [
        "MODEL_REGISTERED",
        "MODEL_STAGE_CHANGED",
    ]


def test_a_receiver_that_never_answers_dead_letters_and_replay_delivers(
    fast, receiver, sk_model, monkeypatch
) -> None:
    services, t = fast
    receiver.status = 500
    hook = ok(t.admin.post("/api/v1/webhooks", json={"url": receiver.url}), 201)
    _upload(t.editor, sk_model)
    deliveries = f"/api/v1/webhooks/{hook['id']}/deliveries"
    receiver.wait_for(
        lambda: [d["state"] for d in ok(t.admin.get(deliveries))["items"]] == ["dead"], timeout=30
    )
    [dead] = ok(t.admin.get(deliveries))["items"]
    assert dead["attempts"] == 4 and dead["last_status"] == 500 and "HTTP 500" in dead["last_error"]
    assert len(receiver.received) == 4  # one per attempt, then no more

    receiver.status = 200
    monkeypatch.setenv("MATIH_DATA_DIR", str(services.settings.data_dir))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    result = CliRunner().invoke(
        __import__("matih_ml.cli", fromlist=["app"]).app,
        ["events", "replay", "--since", since, "--tenant", t.tenant_id, "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replayed"] == 1
    receiver.wait_for(
        lambda: [d["state"] for d in ok(t.admin.get(deliveries))["items"]] == ["delivered"]
    )
    assert len(receiver.unique()) == 1
