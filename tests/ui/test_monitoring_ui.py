"""Monitoring in a browser: a production model fed calm and then drifted input over HTTP
shows PSI per feature (a uPlot chart and a table), latency p50/p95, its error rate and
the drift alert; a production model with no traffic says so; another tenant sees
nothing."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from api.helpers import ok, run_with_model
from conftest import ApiTenant, new_tenant_id, open_production_gate

FEATURES = ["f0", "f1", "f2", "f3"]


def sign_in(page, credential: str, hash_path: str) -> None:
    """Put the credential where the login page puts it (the tab's sessionStorage), then
    open ``hash_path``: the test does not depend on the page the login form goes to."""
    page.open("/login")
    page.tab.evaluate("k => sessionStorage.setItem('matih.credential', k)", credential)
    go(page, hash_path)


def go(page, hash_path: str) -> None:
    page.tab.evaluate("h => { location.hash = h; }", hash_path)
    name = hash_path.strip("/").split("/")[0]
    page.tab.wait_for_selector(
        f"main[data-page='{name}'][data-ready='true']", state="attached", timeout=20_000
    )


def _frame(seed: int, n: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0.0, 1.0, (n, 4)), columns=FEATURES).assign(
        f0=lambda d: d.f0 + shift, f1=lambda d: d.f1 + shift
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An sklearn model whose input example (300 rows) becomes its reference profile."""
    x = _frame(0, 600)
    y = ((x.f0 + x.f1) > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    path = tmp_path_factory.mktemp("monitoring") / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(x, model.predict(x)),
        input_example=x.iloc[:300],
        pip_requirements=["scikit-learn"],
    )
    return path


def _to_production(t: ApiTenant, name: str, model_dir: Path) -> None:
    run_id = run_with_model(t.editor, model_dir)
    ok(t.editor.post("/api/v1/models", json={"name": name, "run_id": run_id}), 201)
    for stage in ("staging", "production"):
        stage_body = {"version": "1", "stage": stage}
        ok(t.editor.put(f"/api/v1/models/{name}/stage", json=stage_body))


def _predict(t: ApiTenant, name: str, frame: pd.DataFrame) -> None:
    records = frame.to_dict(orient="records")
    ok(t.viewer.post(f"/api/v1/models/{name}/predict", json={"records": records}))


def test_drift_latency_errors_and_alerts_per_feature(page, api, services, model_dir) -> None:
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("uimo")).tenant_id)
    other = ApiTenant(
        api, services, services.tenants.create_tenant(new_tenant_id("uimx")).tenant_id
    )
    try:
        open_production_gate(services.lifecycle, t.tenant_id)
        _to_production(t, "churn", model_dir)
        _to_production(t, "quiet", model_dir)  # in production, never asked
        for i in range(5):
            _predict(t, "churn", _frame(100 + i, 20))
        # f0 and f1 move by three standard deviations; f2 and f3 stay where they were.
        for i in range(15):
            _predict(t, "churn", _frame(200 + i, 20, shift=3.0))

        sign_in(page, t.keys["viewer"], "/monitoring")
        assert page.tab.locator("#monitoring-table tbody tr").count() == 2
        churn = page.text("#monitoring-table [data-model='churn']")
        assert "20" in churn and "Drift" in churn and "drifted" in churn
        assert "No traffic yet" in page.text("#monitoring-table [data-model='quiet']")
        page.shot("monitoring-list")

        page.tab.click("#monitoring-table [data-model='churn'] a")
        page.tab.wait_for_selector("main[data-page='monitoring'] .version-panel")
        page.ready()
        panel = ".version-panel[data-version='1'][data-stage='production']"
        psi = {f: float(page.text(f"{panel} [data-feature='{f}'] td.psi")) for f in FEATURES}
        api_figures = ok(t.viewer.get("/api/v1/models/churn/monitoring"))
        assert psi["f0"] > 0.2 and psi["f1"] > 0.2 and psi["f2"] < 0.2 and psi["f3"] < 0.2
        for f in FEATURES:
            assert psi[f] == pytest.approx(api_figures["features"][f]["psi"], rel=1e-3)
        assert page.tab.locator(f"{panel} tr.drifted").count() == 2
        assert "ms" in page.text(f"{panel} [data-figure='p50'] .value")
        assert "ms" in page.text(f"{panel} [data-figure='p95'] .value")
        assert page.text(f"{panel} [data-figure='error-rate'] .value") == "0 %"
        assert page.text(f"{panel} [data-figure='requests'] .value") == "20"
        alert = page.text(f"{panel} .alert[data-check='drift']")
        assert "Drift alert" in alert and "f0, f1" in alert and "episode 1" in alert
        assert page.tab.locator(f"{panel} .alert").count() == 1
        assert page.tab.locator(f"{panel} .chart canvas").count() >= 1
        assert page.tab.locator(f"{panel} .chart .u-legend").count() == 1
        page.shot("monitoring")

        go(page, "/monitoring/quiet")
        assert "No traffic yet" in page.text(".version-panel[data-version='1'] .no-traffic")
        assert page.tab.locator(".chart").count() == 0

        # Another tenant: no model listed, and churn is not found.
        page.tab.click("#logout")
        page.tab.wait_for_selector("main[data-page='login'][data-ready='true']", state="attached")
        page.tab.evaluate("k => sessionStorage.setItem('matih.credential', k)", other.keys["admin"])
        go(page, "/monitoring")
        assert page.tab.is_visible("#monitoring-empty")
        assert page.tab.locator("#monitoring-table").count() == 0
        go(page, "/monitoring/churn")
        assert page.tab.get_attribute("main .error", "data-code") == "NOT_FOUND"
        assert page.tab.locator(".version-panel, [data-feature]").count() == 0
        # Chromium logs the 404 as a failed resource: the answer expected here.
        expected = [p for p in page.problems if "status of 404" in p]
        assert len(expected) == 1, page.problems
        page.problems.remove(expected[0])
    finally:
        t.close()
        other.close()
