"""MLflow's own web UI under /mlflow/, in Chromium, against a real `matih-ml serve`.

The browser signs in with Basic auth (any user name, the API key as the password), as a
user's browser would after the prompt. Two tenants hold experiments and registered models
with names of their own; each tenant's key shows its own names, and no page, no answer
to any of the UI's calls, ever carries the other's. No console error, no failed request
and no request to another host is allowed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from api.helpers import new_run, ok
from conftest import ServeProcess, embedded_settings, new_tenant_id
from matih_ml.api.mlflow_ui import ENTRY as EXPERIMENTS
from ui.browser import SHOTS, Page

MODELS = "/mlflow/#/models?workflowType=machine_learning"


@dataclass
class Tenant:
    id: str
    viewer: str
    editor: str
    names: list[str] = field(default_factory=list)
    run: str = ""  # "<experiment id>/runs/<run id>", a run with a metric and a param


@dataclass
class Deployment:
    server: ServeProcess
    a: Tenant
    b: Tenant


def _tenant(services, server: ServeProcess, prefix: str) -> Tenant:
    """A tenant with experiments and registered models named after it, written through
    the MLflow protocol and our own API alike."""
    tid = services.tenants.create_tenant(new_tenant_id(prefix)).tenant_id
    keys = {r: services.api_keys.create(tid, r, f"{r}-key").secret for r in ("viewer", "editor")}
    t = Tenant(tid, keys["viewer"], keys["editor"])
    mlflow_api = httpx.Client(base_url=server.url, auth=("anyone", t.editor), timeout=60)
    ours = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {t.editor}"}, timeout=60
    )
    with mlflow_api, ours:
        for n in (1, 2):
            name = f"{tid}-experiment-{n}"
            ok(mlflow_api.post("/api/2.0/mlflow/experiments/create", json={"name": name}))
            t.names.append(name)
            name = f"{tid}-model-{n}"
            ok(mlflow_api.post("/api/2.0/mlflow/registered-models/create", json={"name": name}))
            t.names.append(name)
        name = f"{tid}-experiment-ours"
        run_id = new_run(ours, name)
        t.names.append(name)
        body = {"metrics": [{"key": "accuracy", "value": 0.93}], "params": {"C": 1}}
        ok(ours.post(f"/api/v1/runs/{run_id}/log-batch", json=body))
        got = ok(mlflow_api.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}))
        t.run = f"{got['run']['info']['experiment_id']}/runs/{run_id}"
    return t


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    from matih_ml.services import build_services

    tmp = tmp_path_factory.mktemp("mlflow-ui")
    data = tmp / "data"
    server = ServeProcess(tmp / "serve.log", {"MATIH_DATA_DIR": str(data)})
    services = build_services(embedded_settings(data))
    try:
        yield Deployment(server, _tenant(services, server, "uia"), _tenant(services, server, "uib"))
    finally:
        server.stop()
        services.db.dispose()


class MlflowTab(Page):
    """A tab signed in to MLflow's UI with ``key``, recording what the UI's calls answered."""

    def __init__(self, browser, base_url: str, key: str) -> None:
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 900},
            http_credentials={"username": "someone", "password": key},
        )
        super().__init__(self.context, base_url)
        self.calls: list = []
        self.tab.on("response", self._seen)

    def _seen(self, response) -> None:
        if "/static-files/" in response.url:
            return
        self.calls.append(response)
        if response.status >= 400:
            self.problems.append(f"{response.status} {response.request.method} {response.url}")

    def show(self, url: str, expected: list[str]) -> str:
        """Open ``url``, wait until every name in ``expected`` shows, return the page's text."""
        self.tab.goto(self.base + url)
        for name in expected:
            self.tab.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
        return self.tab.inner_text("body")

    def answers(self) -> str:
        """Everything the UI's calls answered so far (read now, before the page unloads)."""
        bodies = []
        for r in self.calls:
            try:
                bodies.append(r.text())
            except Exception:  # noqa: BLE001 - a body the browser no longer holds
                bodies.append("")
        return "\n".join(bodies)

    def close(self) -> None:
        self.context.close()


def test_the_ui_asks_for_a_key_and_serves_its_files_to_anyone(deployment) -> None:
    url = deployment.server.url
    with httpx.Client(base_url=url, timeout=30) as c:
        for path in ("/mlflow/", "/mlflow/ajax-api/2.0/mlflow/experiments/search"):
            for auth in (None, ("someone", "mk_not_a_real_key")):
                r = c.get(path, auth=auth)
                assert r.status_code == 401, (path, r.status_code, r.text)
                assert r.headers["www-authenticate"] == 'Basic realm="matih-ml"'
        assert c.get("/mlflow", follow_redirects=False).headers["location"] == "/mlflow/"
        page = c.get("/mlflow/", auth=("someone", deployment.a.viewer))
        assert page.status_code == 200 and "static-files/static/js/main." in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        script = page.text.split('src="', 1)[1].split('"', 1)[0]
        asset = c.get(f"/mlflow/{script}")  # no credential: the same for everyone
        assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
        assert "immutable" in asset.headers["cache-control"]
        # A Bearer key works too, and the UI's view of the server is a single workspace.
        info = c.get(
            "/mlflow/ajax-api/3.0/mlflow/server-info",
            headers={"Authorization": f"Bearer {deployment.a.viewer}"},
        )
        assert info.status_code == 200 and info.json()["workspaces_enabled"] is False
        for path in ("/mlflow/nothing-here", "/mlflow/api/2.0/mlflow/experiments/search"):
            assert c.get(path, auth=("someone", deployment.a.viewer)).status_code == 404, path
    raw = httpx.get(f"{url}/mlflow/static-files/%2e%2e/%2e%2e/__init__.py")
    assert raw.status_code == 404


def test_each_key_sees_its_own_tenant_and_nothing_else(browser, deployment) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for me, other in ((deployment.a, deployment.b), (deployment.b, deployment.a)):
        tab = MlflowTab(browser, deployment.server.url, me.viewer)
        try:
            experiments = [n for n in me.names if "-experiment-" in n]
            models = [n for n in me.names if "-model-" in n]
            shown = tab.show(EXPERIMENTS, experiments)
            label = "a" if me is deployment.a else "b"
            tab.tab.screenshot(path=str(SHOTS / f"mlflow-experiments-{label}.png"))
            shown += tab.show(MODELS, models)
            tab.tab.screenshot(path=str(SHOTS / f"mlflow-models-{label}.png"))
            answers = tab.answers()
            for name in other.names:
                assert name not in shown, name
                assert name not in answers, name
            assert other.id not in answers
            assert tab.calls, "the UI made no calls"
            assert not tab.problems, tab.problems
        finally:
            tab.close()


def test_our_pages_open_it_in_a_new_tab(browser, deployment) -> None:
    a = deployment.a
    tab = MlflowTab(browser, deployment.server.url, a.viewer)
    try:
        tab.login(a.viewer)  # our pages: the key in the tab's session
        link = tab.tab.locator("#mlflow-ui")
        assert link.get_attribute("href") == EXPERIMENTS
        with tab.context.expect_page() as opened:
            link.click()
        mlflow_tab = opened.value
        first = next(n for n in a.names if "-experiment-" in n)
        mlflow_tab.get_by_text(first, exact=True).first.wait_for(timeout=30_000)
        assert mlflow_tab.url.startswith(f"{deployment.server.url}/mlflow/")
        problems = [p for p in tab.problems if "401" not in p]  # our login page's 401s
        assert not problems, problems
    finally:
        tab.close()


def test_answers_are_not_cached_across_keys(deployment) -> None:
    """A browser may hold one key for /mlflow/ then another: no answer may be reused."""
    r = httpx.post(
        f"{deployment.server.url}/mlflow/ajax-api/2.0/mlflow/experiments/search",
        auth=("someone", deployment.a.viewer),
        json={"max_results": 5},
    )
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    assert {e["name"] for e in r.json()["experiments"]} <= set(deployment.a.names)
    assert json.dumps(r.json()).count(deployment.b.id) == 0


def test_the_run_links_mlflow_prints_open_the_run(browser, deployment) -> None:
    """MLflow's client prints ``<tracking URI>/#/experiments/<id>/runs/<id>``: the
    service's root sends it on to the UI, which shows the run (GraphQL and all)."""
    a = deployment.a
    tab = MlflowTab(browser, deployment.server.url, a.viewer)
    try:
        tab.tab.goto(f"{deployment.server.url}/#/experiments/{a.run}")
        tab.tab.get_by_text("accuracy", exact=True).first.wait_for(timeout=30_000)
        assert tab.tab.url == f"{deployment.server.url}/mlflow/#/experiments/{a.run}"
        tab.tab.screenshot(path=str(SHOTS / "mlflow-run.png"))
        answers = tab.answers()
        assert "0.93" in answers
        for name in deployment.b.names:
            assert name not in answers, name
        assert not tab.problems, tab.problems
    finally:
        tab.close()
