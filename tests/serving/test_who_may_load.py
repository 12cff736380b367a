"""Who may have a version loaded and scored: anyone who may read scores what is served
(staging and production); a version named by number or alias that is not served needs
an editor; another tenant's key finds nothing."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from api.helpers import error, ok, run_with_model
from matih_ml.tenancy import tenant_scope

FEATURES = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    x = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 4)), columns=FEATURES)
    y = ((x.f0 + x.f1) > 0).astype(int)
    clf = LogisticRegression().fit(x, y)
    path = tmp_path_factory.mktemp("who-may-load") / "model"
    mlflow.sklearn.save_model(
        clf,
        str(path),
        signature=infer_signature(x, clf.predict(x)),
        input_example=x.iloc[:50],
        pip_requirements=["scikit-learn"],
    )
    return path


RECORDS = {"records": [{f: 0.5 for f in FEATURES}, {f: -0.5 for f in FEATURES}]}


@pytest.fixture
def served(acme, model_dir) -> dict[str, str]:
    """churn: v1 in production, v2 in development (never promoted)."""
    v1 = ok(
        acme.editor.post(
            "/api/v1/models",
            json={"name": "churn", "run_id": run_with_model(acme.editor, model_dir)},
        ),
        201,
    )["registered_version"]
    ok(
        acme.admin.put(
            "/api/v1/models/churn/policy", json={"production": {"require_approval": False}}
        )
    )
    for stage in ("staging", "production"):
        ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": v1, "stage": stage}))
    run_id = run_with_model(acme.editor, model_dir)
    v2 = ok(acme.editor.post("/api/v1/models/churn/versions", json={"run_id": run_id}), 201)[
        "version"
    ]
    return {"production": v1, "development": v2}


@pytest.mark.parametrize("route", ["predict", "predict:batch"])
def test_a_viewer_cannot_score_a_development_version_by_number(acme, served, route) -> None:
    url = f"/api/v1/models/churn/{route}"
    dev = served["development"]
    err = error(acme.viewer.post(url, params={"version": dev}, json=RECORDS), 403, "FORBIDDEN")
    assert err["details"] == {
        "permission": "write",
        "model_id": "churn",
        "version": dev,
        "stage": "development",
    }
    # The same request twice: the cached resolution keeps the refusal (the event-loop path).
    error(acme.viewer.post(url, params={"version": dev}, json=RECORDS), 403, "FORBIDDEN")
    # An editor may.
    got = ok(acme.editor.post(url, params={"version": dev}, json=RECORDS))
    assert got["version"] == dev and len(got["predictions"]) == 2


@pytest.mark.parametrize("route", ["predict", "predict:batch"])
def test_a_viewer_scores_production_by_stage_alias_and_number(acme, served, route) -> None:
    url = f"/api/v1/models/churn/{route}"
    prod = served["production"]
    for params in ({}, {"stage": "production"}, {"version": prod}, {"alias": "production"}):
        for _ in range(2):  # the second is answered from the cache
            assert ok(acme.viewer.post(url, params=params, json=RECORDS))["version"] == prod


def test_an_alias_on_a_development_version_needs_an_editor(acme, served, services) -> None:
    dev = served["development"]
    with tenant_scope(acme.tenant_id):
        services.backend.client.set_registered_model_alias("churn", "candidate", dev)
    url = "/api/v1/models/churn/predict"
    error(acme.viewer.post(url, params={"alias": "candidate"}, json=RECORDS), 403, "FORBIDDEN")
    assert ok(acme.editor.post(url, params={"alias": "candidate"}, json=RECORDS))["version"] == dev


def test_promotion_opens_a_version_to_viewers_and_archiving_closes_it(acme, served) -> None:
    url = "/api/v1/models/churn/predict"
    dev, prod = served["development"], served["production"]
    ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": dev, "stage": "staging"}))
    assert ok(acme.viewer.post(url, params={"version": dev}, json=RECORDS))["version"] == dev
    ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": dev, "stage": "production"}))
    # The old production version is archived now: no longer served, so no longer a viewer's.
    error(acme.viewer.post(url, params={"version": prod}, json=RECORDS), 403, "FORBIDDEN")


def test_monitoring_a_development_version_needs_an_editor(acme, served) -> None:
    url = "/api/v1/models/churn/monitoring"
    error(acme.viewer.get(url, params={"version": served["development"]}), 403, "FORBIDDEN")
    ok(acme.viewer.get(url, params={"version": served["production"]}))
    ok(acme.editor.get(url, params={"version": served["development"]}))


def test_another_tenant_finds_no_version_at_all(acme, globex, served) -> None:
    for route in ("predict", "predict:batch"):
        url = f"/api/v1/models/churn/{route}"
        for params in ({"version": served["development"]}, {"version": served["production"]}):
            for client in (globex.viewer, globex.editor):
                error(client.post(url, params=params, json=RECORDS), 404)
