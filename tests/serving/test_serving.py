"""Serving over HTTP, in the order a user meets it: production serves, a promotion and a
rollback switch it within a second with no restart, shadow traffic becomes the evidence
the gate accepts, drift raises one event, and the error and latency alerts fire on their
thresholds. Then bad input, another tenant's key, and /metrics."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from api.helpers import error, ok, run_with_model
from conftest import LiveServer

FEATURES = ["f0", "f1", "f2", "f3"]
OPEN_POLICY = {"production": {"require_approval": False}}


def _frame(seed: int, n: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(shift, 1.0, (n, 4)), columns=FEATURES)


def _explode_on_huge(x):
    # A model that fails on some valid input: what the error-rate alert is for.
    if (np.asarray(x) > 1e6).any():
        raise ValueError("value out of the trained range")
    return x


def _save(model, path: Path, sample: pd.DataFrame, **extra) -> Path:
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(sample, model.predict(sample)),
        input_example=sample.iloc[:300],
        pip_requirements=["scikit-learn"],  # inferring them imports torch: seconds per save
        **extra,
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    x = _frame(0, 600)
    y = ((x.f0 + x.f1) > 0).astype(int)
    root = tmp_path_factory.mktemp("serving")
    return {
        "v1": _save(LogisticRegression(C=1.0).fit(x, y), root / "v1", x),
        # Nearly the same decisions as v1: a candidate that shadow traffic should accept.
        "v2": _save(LogisticRegression(C=0.5).fit(x, y), root / "v2", x),
        "fragile": _save_by_value(
            make_pipeline(FunctionTransformer(_explode_on_huge), LogisticRegression()).fit(x, y),
            root / "fragile",
            x,
        ),
    }


def _save_by_value(model, path: Path, sample: pd.DataFrame) -> Path:
    """A code-bearing model, as a tenant ships one: skops refuses a function of this
    module, so it is cloudpickled, with the function's code inside (the sandbox that
    serves it cannot import this test module)."""
    import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        return _save(model, path, sample, serialization_format="cloudpickle")
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict(orient="records")


def _register(tenant, name: str, model_dir: Path, tags: dict | None = None) -> str:
    run_id = run_with_model(tenant.editor, model_dir)
    if tenant.viewer.get(f"/api/v1/models/{name}").status_code == 404:
        body = {"name": name, "run_id": run_id, "tags": tags or {}}
        return ok(tenant.editor.post("/api/v1/models", json=body), 201)["registered_version"]
    body = {"run_id": run_id, "tags": tags or {}}
    return ok(tenant.editor.post(f"/api/v1/models/{name}/versions", json=body), 201)["version"]


def _move(tenant, name: str, version: str, stage: str) -> None:
    ok(tenant.editor.put(f"/api/v1/models/{name}/stage", json={"version": version, "stage": stage}))


def _to_production(tenant, name: str, version: str) -> None:
    _move(tenant, name, version, "staging")
    _move(tenant, name, version, "production")


def _predict(tenant, name: str, frame: pd.DataFrame, **params) -> dict:
    url = f"/api/v1/models/{name}/predict"
    return ok(tenant.viewer.post(url, params=params, json={"records": _records(frame)}))


def _served_within(tenant, name: str, version: str, limit_s: float = 1.0) -> float:
    """Seconds until production requests are answered by ``version``."""
    started = time.monotonic()
    row = _frame(7, 1)
    while time.monotonic() - started < limit_s + 2:
        if _predict(tenant, name, row)["version"] == version:
            return time.monotonic() - started
    raise AssertionError(f"v{version} did not serve within {limit_s + 2} s")


def _events(tenant, kind: str) -> list[dict]:
    return ok(tenant.viewer.get("/api/v1/events", params={"types": kind, "limit": 1000}))["items"]


def _serving(api):
    return api.server.config.app.state.serving


def test_production_serves_and_promotion_and_rollback_switch_within_a_second(
    acme, api, models
) -> None:
    v1 = _register(acme, "churn", models["v1"])
    ok(acme.admin.put("/api/v1/models/churn/policy", json=OPEN_POLICY))
    error(acme.viewer.post("/api/v1/models/churn/predict", json={"records": []}), 404)
    _to_production(acme, "churn", v1)
    x = _frame(1, 25)
    got = _predict(acme, "churn", x)
    expected = mlflow.sklearn.load_model(str(models["v1"])).predict(x).tolist()
    assert (got["version"], got["target"], got["predictions"]) == (v1, "production", expected)
    # An all-numeric sklearn signature is scored from a float array (the fast path).
    assert _serving(api).cache.get(acme.tenant_id, "churn", v1)._fast is not None

    v2 = _register(acme, "churn", models["v2"])
    _to_production(acme, "churn", v2)
    assert _served_within(acme, "churn", v2) <= 1.0
    ok(acme.editor.post("/api/v1/models/churn/rollback", json={"reason": "v2 is slower"}))
    assert _served_within(acme, "churn", v1) <= 1.0
    # No reload per request: v1 and v2 were each loaded once (v1 stayed cached).
    for _ in range(20):
        assert _predict(acme, "churn", x)["version"] == v1
    cache = _serving(api).cache
    assert [cache.loads_of(acme.tenant_id, "churn", v) for v in (v1, v2)] == [1, 1]
    # A version, an alias and a stage can be asked for explicitly (v2 is back in
    # development: scoring it by number takes an editor, tests/serving/test_who_may_load.py).
    url = "/api/v1/models/churn/predict"
    by_number = acme.editor.post(url, params={"version": v2}, json={"records": _records(x)})
    assert ok(by_number)["version"] == v2
    assert _predict(acme, "churn", x, alias="production")["version"] == v1
    deployed = [e["data"] for e in _events(acme, "MODEL_DEPLOYED")]
    assert [(d["version"], d["replaced"]) for d in deployed] == [(v1, None), (v2, v1), (v1, v2)]


def test_shadow_traffic_becomes_evidence_the_gate_accepts(acme, models) -> None:
    v1 = _register(acme, "fraud", models["v1"])
    policy = {"production": {"require_approval": False, "require_evaluation": True}}
    ok(acme.admin.put("/api/v1/models/fraud/policy", json=policy))
    _move(acme, "fraud", v1, "staging")
    ok(
        acme.admin.put(
            "/api/v1/models/fraud/stage",
            json={"version": v1, "stage": "production", "force": True, "reason": "first"},
        )
    )
    v2 = _register(acme, "fraud", models["v2"])
    _move(acme, "fraud", v2, "staging")
    refused = error(
        acme.editor.put("/api/v1/models/fraud/stage", json={"version": v2, "stage": "production"}),
        409,
        "GATE_FAILED",
    )
    assert "evaluation" in refused["details"]["reasons"][0]
    mode = ok(acme.editor.put("/api/v1/models/fraud/serving", json={"mode": "shadow"}))
    assert mode["mode"] == "shadow"
    for i in range(30):
        got = _predict(acme, "fraud", _frame(100 + i, 5))
        assert got["version"] == v1  # shadow never answers
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        summary = ok(acme.viewer.get("/api/v1/models/fraud/serving/summary"))
        if summary["samples"] >= 150:
            break
        time.sleep(0.1)
    assert summary["samples"] == 150 and summary["staging_version"] == v2
    assert summary["agreement"] > 0.9 and summary["staging_error_rate"] == 0.0
    # Too few samples for these criteria: recorded as failed, and the gate still refuses.
    short = ok(
        acme.editor.post(
            "/api/v1/models/fraud/serving/evidence", json={"kind": "shadow", "min_samples": 1000}
        ),
        201,
    )
    assert not short["evaluation"]["passed"] and "fewer than 1000" in short["reasons"][0]
    error(
        acme.editor.put("/api/v1/models/fraud/stage", json={"version": v2, "stage": "production"}),
        409,
        "GATE_FAILED",
    )
    good = ok(
        acme.editor.post(
            "/api/v1/models/fraud/serving/evidence",
            json={"kind": "shadow", "min_samples": 100, "min_agreement": 0.9},
        ),
        201,
    )
    assert good["evaluation"]["passed"] and good["evaluation"]["metrics"]["samples"] == 150
    moved = ok(
        acme.editor.put("/api/v1/models/fraud/stage", json={"version": v2, "stage": "production"})
    )
    assert moved["stage"] == "production"
    gates = ok(acme.viewer.get(f"/api/v1/models/fraud/versions/{v2}/gates"))["items"]
    assert gates[-1]["passed"] and gates[-1]["details"]["evaluation"]["kind"] == "shadow"


def test_ab_sends_a_share_of_traffic_to_staging(acme, models) -> None:
    v1 = _register(acme, "ranker", models["v1"])
    ok(acme.admin.put("/api/v1/models/ranker/policy", json=OPEN_POLICY))
    _to_production(acme, "ranker", v1)
    v2 = _register(acme, "ranker", models["v2"])
    _move(acme, "ranker", v2, "staging")
    error(acme.editor.put("/api/v1/models/ranker/serving", json={"mode": "ab"}), 422)
    ok(acme.editor.put("/api/v1/models/ranker/serving", json={"mode": "ab", "ab_share": 0.3}))
    answered = [_predict(acme, "ranker", _frame(i, 1))["version"] for i in range(200)]
    share = answered.count(v2) / len(answered)
    assert 0.15 < share < 0.45, share
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        summary = ok(
            acme.viewer.get("/api/v1/models/ranker/serving/summary", params={"mode": "ab"})
        )
        if summary["samples"] == 200:
            break
        time.sleep(0.1)
    assert summary["samples"] == 200 and summary["staging_p95_ms"] is not None
    assert summary["production_error_rate"] == summary["staging_error_rate"] == 0.0
    # A/B outcomes are evidence too (no agreement criterion: the arms saw different rows).
    body = {"kind": "ab", "min_samples": 50, "max_latency_ratio": 100.0}
    evidence = ok(acme.editor.post("/api/v1/models/ranker/serving/evidence", json=body), 201)
    assert evidence["evaluation"]["kind"] == "ab" and evidence["evaluation"]["passed"]
    assert evidence["evaluation"]["version"] == v2 and evidence["reasons"] == []


def test_drifted_input_raises_exactly_one_drift_event(acme, models) -> None:
    v1 = _register(acme, "drifty", models["v1"])
    ok(acme.admin.put("/api/v1/models/drifty/policy", json=OPEN_POLICY))
    _to_production(acme, "drifty", v1)
    for i in range(10):
        _predict(acme, "drifty", _frame(200 + i, 20))
    calm = ok(acme.viewer.get("/api/v1/models/drifty/monitoring"))
    assert calm["reference"] and calm["alarms"]["drift"] is False
    assert max(f["psi"] for f in calm["features"].values()) < 0.2
    assert calm["thresholds"] == {
        "psi": 0.2,
        "ks_pvalue": 0.01,
        "prediction_shift": 2.0,
        "error_rate": 0.01,
    }
    assert _events(acme, "MODEL_DRIFT_DETECTED") == []
    for i in range(15):
        _predict(acme, "drifty", _frame(300 + i, 20, shift=3.0))
    for _ in range(3):  # checked again and again while it lasts: still one event
        drifted = ok(acme.viewer.get("/api/v1/models/drifty/monitoring"))
        assert drifted["alarms"]["drift"] is True and drifted["episodes"]["drift"] == 1
    events = _events(acme, "MODEL_DRIFT_DETECTED")
    assert len(events) == 1
    data = events[0]["data"]
    assert (data["model"], data["version"], data["metric"]) == ("drifty", v1, "psi")
    assert set(data["features"]) == set(FEATURES) and data["value"] > 0.2


def test_error_and_latency_alerts_fire_on_their_thresholds(acme, models) -> None:
    ok(acme.admin.put("/api/v1/policy", json=OPEN_POLICY))
    fragile = _register(acme, "fragile", models["fragile"], tags={"sla_ms": "10000"})
    _to_production(acme, "fragile", fragile)
    good = _frame(400, 1)
    bad = good.assign(f0=1e9)
    for _ in range(150):
        _predict(acme, "fragile", good)
    failed = error(
        acme.viewer.post("/api/v1/models/fragile/predict", json={"records": _records(bad)}),
        422,
        "PREDICTION_FAILED",
    )
    assert "out of the trained range" in failed["message"]
    below = ok(acme.viewer.get("/api/v1/models/fragile/monitoring"))
    assert 0 < below["error_rate"] <= 0.01 and below["alarms"]["error_rate"] is False
    for _ in range(2):
        acme.viewer.post("/api/v1/models/fragile/predict", json={"records": _records(bad)})
    above = ok(acme.viewer.get("/api/v1/models/fragile/monitoring"))
    assert above["error_rate"] > 0.01 and above["alarms"]["error_rate"] is True
    assert above["alarms"]["latency"] is False  # p95 well under its 10 s SLA
    ok(acme.viewer.get("/api/v1/models/fragile/monitoring"))
    alerts = [e["data"] for e in _events(acme, "MODEL_ERROR_RATE_ALERT")]
    assert len(alerts) == 1 and alerts[0]["threshold"] == 0.01 and alerts[0]["window"] == 153
    assert _events(acme, "MODEL_LATENCY_ALERT") == []

    strict = _register(acme, "strict", models["v1"], tags={"sla_ms": "0.000001"})
    _to_production(acme, "strict", strict)
    for _ in range(19):
        _predict(acme, "strict", good)
    assert ok(acme.viewer.get("/api/v1/models/strict/monitoring"))["alarms"]["latency"] is None
    _predict(acme, "strict", good)
    slow = ok(acme.viewer.get("/api/v1/models/strict/monitoring"))
    assert slow["alarms"]["latency"] is True and slow["sla_ms"] == 0.000001
    latency = [e["data"] for e in _events(acme, "MODEL_LATENCY_ALERT")]
    assert [(d["model"], d["metric"]) for d in latency] == [("strict", "latency_p95_ms")]


def test_bad_input_is_a_422_naming_the_field(acme, models) -> None:
    v1 = _register(acme, "strictinput", models["v1"])
    ok(acme.admin.put("/api/v1/models/strictinput/policy", json=OPEN_POLICY))
    _to_production(acme, "strictinput", v1)
    url = "/api/v1/models/strictinput/predict"
    row = {"f0": 0.1, "f1": 0.2, "f2": 0.3, "f3": 0.4}
    missing = error(acme.viewer.post(url, json={"records": [row, {"f0": 1.0}]}), 422)
    assert missing["details"]["field"] == "records[1].f1"
    wrong = error(acme.viewer.post(url, json={"records": [{**row, "f2": "high"}]}), 422)
    assert wrong["details"]["field"] == "records[0].f2"
    assert error(acme.viewer.post(url, json={"records": []}), 422)["details"]["field"] == "records"
    error(acme.viewer.post(url, json={"inputs": [[1, 2, 3, 4]]}), 422)
    error(
        acme.viewer.post(url, content=b"{nope", headers={"content-type": "application/json"}), 422
    )
    error(acme.viewer.post(url, json=[row]), 422)
    error(acme.viewer.post(url, json={"records": [row] * 1001}), 413)
    error(acme.viewer.post(url, params={"stage": "canary"}, json={"records": [row]}), 422)
    error(
        acme.viewer.post(url, params={"stage": "staging", "version": "1"}, json={"records": [row]}),
        422,
    )
    error(acme.viewer.post(url, params={"stage": "staging"}, json={"records": [row]}), 404)
    error(acme.viewer.post(url, params={"version": "99"}, json={"records": [row]}), 404)
    # A batch of 25,000 records is scored in chunks by one version.
    big = _records(_frame(9, 25_000))
    out = ok(acme.viewer.post(f"{url}:batch", json={"records": big}))
    assert out["version"] == v1 and len(out["predictions"]) == 25_000


def test_another_tenants_key_reaches_none_of_it(acme, globex, api, models) -> None:
    v1 = _register(acme, "secret", models["v1"])
    ok(acme.admin.put("/api/v1/models/secret/policy", json=OPEN_POLICY))
    _to_production(acme, "secret", v1)
    row = {"records": [{"f0": 0.1, "f1": 0.2, "f2": 0.3, "f3": 0.4}]}
    base = "/api/v1/models/secret"
    for method, path, body in [
        ("post", f"{base}/predict", row),
        ("post", f"{base}/predict:batch", row),
        ("get", f"{base}/serving", None),
        ("put", f"{base}/serving", {"mode": "shadow"}),
        ("get", f"{base}/serving/summary", None),
        ("post", f"{base}/serving/evidence", {"kind": "shadow"}),
        ("get", f"{base}/monitoring", None),
    ]:
        for client in (globex.admin, globex.editor):
            kwargs = {"json": body} if body is not None else {}
            error(getattr(client, method)(path, **kwargs), 404)
    assert ok(acme.viewer.get(f"{base}/serving"))["mode"] == "off"


@pytest.fixture(scope="module")
def scrape(services) -> dict[str, str]:
    """The session server's scrape token (the embedded default's: made, as `serve` makes it)."""
    from matih_ml.auth.scrape_token import TOKEN_FILE, ensure_scrape_token

    (services.settings.data_dir / TOKEN_FILE).unlink(missing_ok=True)
    return {"Authorization": f"Bearer {ensure_scrape_token(services.settings)}"}


def test_metrics_count_requests_per_tenant_model_and_version(acme, api, models, scrape) -> None:
    v1 = _register(acme, "counted", models["v1"])
    ok(acme.admin.put("/api/v1/models/counted/policy", json=OPEN_POLICY))
    _to_production(acme, "counted", v1)
    for _ in range(3):
        _predict(acme, "counted", _frame(5, 2))
    scraped = httpx.get(f"{api.url}/metrics", headers=scrape)
    assert scraped.status_code == 200, scraped.text
    samples = {
        (m.name, tuple(sorted(m.labels.items()))): m.value
        for family in text_string_to_metric_families(scraped.text)
        for m in family.samples
    }
    labels = {"tenant": acme.tenant_id, "model": "counted", "version": v1}
    ok_key = ("matih_predictions_total", tuple(sorted({**labels, "outcome": "ok"}.items())))
    assert samples[ok_key] == 3.0
    count = ("matih_prediction_latency_seconds_count", tuple(sorted(labels.items())))
    assert samples[count] == 3.0


def test_metrics_are_closed_without_the_scrape_token_on_the_embedded_default(
    acme, api, scrape, services, tmp_path
) -> None:
    from matih_ml.auth.scrape_token import ensure_scrape_token

    assert services.settings.embedded and not services.settings.metrics_token
    with httpx.Client(base_url=api.url) as client:
        tenant_key = {"Authorization": f"Bearer {acme.keys['admin']}"}
        for headers in ({}, tenant_key, {"Authorization": "Bearer not-the-token"}):
            r = client.get("/metrics", headers=headers)
            assert acme.tenant_id not in r.text
            error(r, 401, "UNAUTHENTICATED")
        scraped = client.get("/metrics", headers=scrape)
        assert scraped.status_code == 200 and "matih_predictions" in scraped.text
    # Made once: a second start finds the token and shows nothing.
    assert ensure_scrape_token(services.settings) is None
    # A data dir with no token yet keeps /metrics closed too, and says how to open it.
    fresh = services.settings.model_copy(update={"data_dir": tmp_path / "fresh"})
    server = LiveServer(create_app_with(services, fresh))
    try:
        err = error(httpx.get(f"{server.url}/metrics"), 401, "UNAUTHENTICATED")
        assert "matih-ml serve" in err["message"]
        token = ensure_scrape_token(fresh)
        assert (tmp_path / "fresh" / "metrics-token.sha256").read_text().strip() != token
        opened = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert opened.status_code == 200
    finally:
        server.stop()


def test_metrics_are_closed_on_other_profiles_without_a_token(services) -> None:
    # A tracking URI set: not the embedded default, and single host: open until now.
    settings = services.settings.model_copy(
        update={"tracking_uri_env": services.settings.tracking_uri}
    )
    assert settings.single_host and not settings.embedded
    server = LiveServer(create_app_with(services, settings))
    try:
        err = error(httpx.get(f"{server.url}/metrics"), 401, "UNAUTHENTICATED")
        assert "MATIH_METRICS_TOKEN" in err["message"]
    finally:
        server.stop()


def create_app_with(services, settings):
    from matih_ml.api.app import create_app

    return create_app(services=replace(services, settings=settings))


def test_metrics_need_the_scrape_token_not_a_tenant_key(acme, services) -> None:
    from matih_ml.api.app import create_app

    settings = services.settings.model_copy(update={"metrics_token": "scrape-me"})
    server = LiveServer(create_app(services=replace(services, settings=settings)))
    try:
        with httpx.Client(base_url=server.url) as client:
            tenant_key = {"Authorization": f"Bearer {acme.keys['admin']}"}
            error(client.get("/metrics", headers=tenant_key), 401)
            error(client.get("/metrics"), 401)
            scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
            assert scraped.status_code == 200 and "matih_predictions" in scraped.text
    finally:
        server.stop()


def test_a_model_without_a_signature_takes_an_array(acme, saved_sklearn_model, sk_model, xy):
    # The README's tour: a model saved with no signature, predicted with "inputs".
    v1 = _register(acme, "nosig", saved_sklearn_model)
    ok(acme.admin.put("/api/v1/models/nosig/policy", json=OPEN_POLICY))
    _to_production(acme, "nosig", v1)
    x = xy[0][:5]
    got = ok(acme.viewer.post("/api/v1/models/nosig/predict", json={"inputs": x.tolist()}))
    assert got["predictions"] == sk_model.predict(x.astype(np.float32)).tolist()
    error(acme.viewer.post("/api/v1/models/nosig/predict", json={"inputs": [[1, "x"]]}), 422)
    error(acme.viewer.post("/api/v1/models/nosig/predict", json={"inputs": [[1, None]]}), 422)
