"""The runs pages in a browser: experiments, an experiment's runs, and two runs compared
side by side (params, metrics, "only differences") with their loss curves overlaid from
the downsampled history; a 300,000-point run charted from at most 1,000 buckets; and
another tenant that sees none of it."""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlparse

from api.helpers import new_run, ok
from conftest import ApiTenant, new_tenant_id

# Every series of a chart, as the page keeps it: [label, points that are not null].
SERIES = """key => {
  const u = window.__charts && window.__charts[key];
  if (!u) return null;
  return u.series.map((s, i) => [s.label, u.data[i].filter(v => v !== null).length]);
}"""


def sign_in(page, credential: str, hash_path: str) -> None:
    """Put the credential where the login page keeps it (the tab's sessionStorage), then
    open ``hash_path`` (the login form itself goes on to the models page)."""
    if page.tab.url.startswith(page.base) and page.tab.is_visible("#logout"):
        page.tab.click("#logout")  # forgets the previous key and who it was
        page.tab.wait_for_selector("main[data-page='login'][data-ready='true']", state="attached")
    else:
        page.open("/login")
    page.tab.evaluate("k => sessionStorage.setItem('matih.credential', k)", credential)
    go(page, hash_path)


def go(page, hash_path: str) -> None:
    """Navigate inside the app and wait until the new page has rendered."""
    page.tab.evaluate("h => { document.getElementById('main').dataset.ready = 'false'; }", None)
    page.tab.evaluate("h => { location.hash = h; }", hash_path)
    page.ready()


def run(client, experiment: str, name: str, params: dict, metrics: dict, loss: list[float]) -> str:
    """A finished run with params, latest metrics and a loss history of ``len(loss)`` steps."""
    run_id = new_run(client, experiment, run_name=name)
    body = {"metrics": [{"key": k, "value": v} for k, v in metrics.items()], "params": params}
    ok(client.post(f"/api/v1/runs/{run_id}/log-batch", json=body))
    if loss:
        columns = {"keys": ["loss"] * len(loss), "values": loss, "steps": list(range(len(loss)))}
        ok(client.post(f"/api/v1/runs/{run_id}/metrics:batch", json=columns))
    ok(client.post(f"/api/v1/runs/{run_id}/end", json={"status": "FINISHED"}))
    return run_id


def curve(n: int, rate: float) -> list[float]:
    return [math.exp(-rate * i / n) + 0.02 * math.sin(i / 7) for i in range(n)]


def new_tenant(api, services, prefix: str) -> ApiTenant:
    return ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id(prefix)).tenant_id)


def test_experiments_runs_compare_and_isolation(page, api, services) -> None:
    t = new_tenant(api, services, "uiruns")
    other = new_tenant(api, services, "uirunx")
    try:
        common = {"epochs": "20", "optimizer": "adam"}
        base = run(
            t.editor,
            "churn-train",
            "baseline",
            {**common, "lr": "0.1"},
            {"accuracy": 0.81, "auc": 0.9},
            curve(400, 2.0),
        )
        wide = run(
            t.editor,
            "churn-train",
            "wider <b>net</b>",
            {**common, "lr": "0.01"},
            {"accuracy": 0.86, "auc": 0.9},
            curve(400, 3.5),
        )
        run(t.editor, "churn-train", "scratch", {"lr": "1"}, {"accuracy": 0.5}, [])
        run(t.editor, "fraud-train", "first", {}, {"accuracy": 0.7}, [])
        exp_id = ok(t.viewer.get(f"/api/v1/runs/{base}"))["experiment_id"]

        # The experiments, each a link to its runs.
        sign_in(page, t.keys["viewer"], "/runs")
        assert page.tab.get_attribute("main", "data-page") == "runs"
        experiments = page.text("#experiments-table")
        assert "churn-train" in experiments and "fraud-train" in experiments
        page.shot("experiments")
        page.tab.click("#experiments-table a:text('churn-train')")
        page.tab.wait_for_selector("main[data-ready='true'] #runs-table")
        assert page.tab.evaluate("location.hash") == f"#/runs/{exp_id}"

        # Its runs, with their key metrics; Compare waits for two ticks.
        assert page.tab.locator("#runs-table tbody tr").count() == 3
        row = page.text(f"#runs-table [data-run='{wide}']")
        assert "wider <b>net</b>" in row and "FINISHED" in row and "0.86" in row
        assert "editor-key" in row
        assert page.tab.is_disabled("#compare")
        page.tab.check(f"#runs-table [data-run='{base}'] input[type=checkbox]")
        assert page.tab.is_disabled("#compare")
        page.tab.click(f"#runs-table [data-run='{wide}'] td.pick")  # the box, or its cell
        page.tab.click(f"#runs-table [data-run='{wide}'] .run-name")  # the row toggles it
        page.tab.click(f"#runs-table [data-run='{wide}'] .run-name")
        assert page.tab.is_checked(f"#runs-table [data-run='{wide}'] input[type=checkbox]")
        page.shot("runs")
        page.tab.click("#compare:enabled")
        page.tab.wait_for_selector("main[data-ready='true'] #compare-table")
        assert page.tab.evaluate("location.hash") == f"#/runs/compare?ids={base},{wide}"

        # Params and metrics of both runs, one column each.
        table = "#compare-table"
        for rid in (base, wide):
            assert page.tab.is_visible(f"{table} th[data-run='{rid}']")
        assert "wider <b>net</b>" in page.text(f"{table} th[data-run='{wide}']")

        def cells(kind: str, key: str) -> list[str]:
            sel = f"{table} tr[data-kind='{kind}'][data-key='{key}'] td"
            return [c.strip() for c in page.tab.locator(sel).all_inner_texts()]

        assert cells("param", "lr") == ["0.1", "0.01"]
        assert cells("param", "epochs") == ["20", "20"]
        assert cells("metric", "accuracy") == ["0.81", "0.86"]
        assert cells("metric", "auc") == ["0.9", "0.9"]
        assert len(cells("metric", "loss")) == 2

        # "Only differences" hides the equal rows and keeps the differing ones.
        differs = f"{table} tr.differs"
        keys = page.tab.eval_on_selector_all(differs, "rs => rs.map(r => r.dataset.key)")
        assert sorted(keys) == ["accuracy", "loss", "lr"]
        page.tab.check("#only-differences")
        visible = page.tab.eval_on_selector_all(
            f"{table} tr[data-key]", "rs => rs.filter(r => !r.hidden).map(r => r.dataset.key)"
        )
        assert sorted(visible) == ["accuracy", "loss", "lr"]
        for key in ("epochs", "optimizer", "auc"):
            assert not page.tab.is_visible(f"{table} tr[data-key='{key}']")
        assert page.tab.is_visible(f"{table} tr[data-key='lr'].differs")
        page.tab.uncheck("#only-differences")
        assert page.tab.is_visible(f"{table} tr[data-key='epochs']")

        # Both loss curves on one chart, its legend naming both runs.
        series = page.tab.evaluate(SERIES, "loss")
        assert series is not None and len(series) == 3, series
        assert [s[0] for s in series[1:]] == ["baseline", "wider <b>net</b>"]
        assert all(n > 50 for _, n in series[1:]), series
        legend = page.text(".chart[data-metric='loss'] .u-legend")
        assert "baseline" in legend and "wider <b>net</b>" in legend
        page.tab.hover(".chart[data-metric='loss'] .u-over")
        page.shot("compare")
        # A metric one value long is left to the table, unless ticked.
        assert page.tab.evaluate(SERIES, "accuracy") is None
        assert page.tab.locator(".chip.single input[data-metric='accuracy']").count() == 1
        page.tab.check("#chart-metrics input[data-metric='accuracy']")
        page.tab.wait_for_selector(".chart[data-metric='accuracy'] .u-over")
        accuracy = page.tab.evaluate(SERIES, "accuracy")
        assert accuracy[1:] == [["baseline", 1], ["wider <b>net</b>", 1]]

        # Another tenant's key: no experiments, and A's runs and experiment are not found.
        # Chromium logs each 404 answer as a console error: those (and only those) are
        # expected here, as many as the API answered 404.
        assert not page.problems, page.problems
        not_found: list[str] = []
        page.tab.on("response", lambda r: not_found.append(r.url) if r.status == 404 else None)
        sign_in(page, other.keys["viewer"], "/runs")
        assert page.tab.is_visible("#experiments-table #no-experiments")
        assert "churn-train" not in page.text()
        go(page, f"/runs/compare?ids={base},{wide}")
        assert page.tab.get_attribute("main .error", "data-code") == "NOT_FOUND"
        assert page.tab.locator("#compare-table").count() == 0
        assert page.tab.evaluate("Object.keys(window.__charts || {}).length") == 0
        go(page, f"/runs/{exp_id}")
        assert page.tab.get_attribute("main .error", "data-code") == "NOT_FOUND"
        assert page.tab.locator("#runs-table").count() == 0
        assert not_found and all(urlparse(u).path.startswith("/api/v1/") for u in not_found)
        status_404 = "the server responded with a status of 404"
        assert sum(status_404 in p for p in page.problems) == len(not_found), page.problems
        page.problems[:] = [p for p in page.problems if status_404 not in p]
    finally:
        t.close()
        other.close()


def test_a_long_run_is_charted_from_the_downsampled_history(page, api, services) -> None:
    t = new_tenant(api, services, "uilong")
    try:
        n = 300_000
        long = new_run(t.editor, "long-train", run_name="long")
        for start in range(0, n, 150_000):  # the bulk endpoint takes 200,000 a request
            steps = list(range(start, start + 150_000))
            body = {
                "keys": ["loss"] * len(steps),
                "values": [1 / (1 + s / 1000) + 0.01 * math.sin(s / 50) for s in steps],
                "steps": steps,
            }
            ok(t.editor.post(f"/api/v1/runs/{long}/metrics:batch", json=body))
        short = run(t.editor, "long-train", "short", {}, {}, curve(2_000, 3.0))

        requests: list[str] = []
        page.tab.on("request", lambda r: requests.append(r.url) if "/metrics/" in r.url else None)
        sign_in(page, t.keys["viewer"], f"/runs/compare?ids={long},{short}")
        page.tab.wait_for_selector(".chart[data-metric='loss'] .u-over")

        # Only downsampled histories were asked for, each at most 1,000 buckets.
        assert len(requests) == 2, requests
        for url in requests:
            q = parse_qs(urlparse(url).query)
            assert urlparse(url).path.endswith("/metrics/loss/history")
            assert 100 <= int(q["max_points"][0]) <= 1000, url
        series = dict(page.tab.evaluate(SERIES, "loss")[1:])
        assert 100 <= series["long"] <= 1000 and 100 <= series["short"] <= 1000, series
        assert page.tab.get_attribute(".chart[data-metric='loss']", "data-total") == str(n)
        assert "302,000 points" in page.text(".chart[data-metric='loss'] .chart-head")
        page.shot("compare-long")
    finally:
        t.close()
