"""The Models pages in Chromium on the real API: the list (search, filters, pages), a
model (versions, card, lineage, promote, roll back, the gate's refusal) and its history
(the timeline, production at a time), and what another tenant's key sees of them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.helpers import ok, run_with_model
from conftest import ApiTenant, new_tenant_id, open_production_gate

LINEAGE = {
    "job_id": "job-42",
    "training_run_id": "0123456789abcdef0123456789abcdef",
    "feast.project": "shop",
    "feast.view.customer_stats": "a1b2c3",
    "feast.features": "customer_stats:orders_30d,customer_stats:spend_30d",
}


@pytest.fixture(scope="module")
def shop(api, services, saved_sklearn_model):
    """churn (v1 archived, v2 in production, behind a gate that refuses production),
    churn-eu (development), fraud (staging)."""
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("uim")).tenant_id)
    open_production_gate(services.lifecycle, t.tenant_id)
    run1 = run_with_model(t.editor, saved_sklearn_model)
    for name, team in (("churn", "growth"), ("churn-eu", "growth"), ("fraud", "risk")):
        body = {"name": name, "run_id": run1, "tags": {"team": team}}
        ok(t.editor.post("/api/v1/models", json=body), 201)
    run2 = run_with_model(t.editor, saved_sklearn_model)
    ok(t.editor.post("/api/v1/models/churn/versions", json={"run_id": run2, "tags": LINEAGE}), 201)
    for version, stage, reason in (
        ("1", "staging", ""),
        ("1", "production", "first ship"),
        ("2", "staging", ""),
        ("2", "production", "ship v2"),
    ):
        move = {"version": version, "stage": stage, "reason": reason}
        ok(t.editor.put("/api/v1/models/churn/stage", json=move))
    ok(t.editor.put("/api/v1/models/fraud/stage", json={"version": "1", "stage": "staging"}))
    # From here on, churn's production gate wants an approval and an evaluation.
    policy = {"production": {"require_approval": True, "require_evaluation": True}}
    ok(t.admin.put("/api/v1/models/churn/policy", json=policy))
    t.v2_in_production = datetime.now(UTC).isoformat()
    yield t
    t.close()


def settle(page, action) -> None:
    """Do what re-renders the page (a navigation), and wait for the new render."""
    page.tab.evaluate("document.getElementById('main').dataset.ready = 'stale'")
    action()
    page.ready()


def go(page, hash_path: str) -> None:
    """Open a page of the app already loaded (a hash change within the document)."""
    settle(page, lambda: page.tab.goto(f"{page.base}/ui/#{hash_path}"))


def expected(page, *statuses: int) -> None:
    """The browser logs an API answer of these statuses as a console error: here they are
    the answers the test asked for, not breakage."""
    page.problems[:] = [
        p for p in page.problems if not any(f"status of {s}" in p for s in statuses)
    ]


def listed(page) -> list[str]:
    return page.tab.eval_on_selector_all(
        "#models-table tbody tr", "rs => rs.map(r => r.dataset.model)"
    )


def confirm(page, reason: str = "") -> None:
    page.tab.wait_for_selector("dialog#confirm[open]")
    if reason:
        page.tab.fill("#confirm-reason", reason)
    page.tab.click("#confirm-ok")


def row_stage(page, version: str) -> str:
    return page.tab.get_attribute(
        f"#versions-table tr[data-version='{version}'] .badge", "data-stage"
    )


def test_the_list_searches_filters_and_pages(page, shop) -> None:
    page.login(shop.keys["editor"])
    assert listed(page) == ["churn", "churn-eu", "fraud"]
    assert page.tab.get_attribute("[data-model=churn] a", "href") == "#/models/churn"
    assert page.tab.get_attribute("[data-model=fraud] .badge", "data-stage") == "staging"
    page.shot("models-list")

    page.tab.fill("#q", "EU")
    settle(page, lambda: page.tab.press("#q", "Enter"))
    assert listed(page) == ["churn-eu"]
    assert "q=EU" in page.tab.evaluate("location.hash")
    settle(page, page.tab.reload)  # the filters live in the hash: a reload keeps them
    assert listed(page) == ["churn-eu"] and page.tab.input_value("#q") == "EU"

    settle(page, lambda: page.tab.click("#clear-filters"))
    settle(page, lambda: page.tab.select_option("#stage-filter", "staging"))
    assert listed(page) == ["fraud"]
    settle(page, lambda: page.tab.select_option("#stage-filter", "production"))
    assert listed(page) == ["churn"]
    settle(page, lambda: page.tab.select_option("#framework-filter", "onnx"))
    assert listed(page) == [] and "No models match" in page.text("#models-empty")

    go(page, "/models?tag=team%3Dgrowth")
    assert listed(page) == ["churn", "churn-eu"]
    assert page.tab.input_value("#tag-filter") == "team=growth"
    page.tab.fill("#tag-filter", "team")
    settle(page, lambda: page.tab.click("#apply-filters"))
    assert "VALIDATION_ERROR" in page.text("#list-error") and "tag" in page.text("#list-error")

    go(page, "/models?size=2")
    assert listed(page) == ["churn", "churn-eu"] and page.tab.is_disabled("#prev")
    settle(page, lambda: page.tab.click("#next"))
    assert listed(page) == ["fraud"] and page.tab.is_disabled("#next")
    assert page.tab.get_attribute("#page-number", "data-page") == "2"
    settle(page, page.tab.reload)
    assert listed(page) == ["fraud"]
    settle(page, lambda: page.tab.click("#prev"))
    assert listed(page) == ["churn", "churn-eu"]
    settle(page, lambda: page.tab.click("[data-model=churn] a"))
    assert page.tab.inner_text("#model-name") == "churn"
    expected(page, 422)


def test_a_model_its_lineage_promote_refusal_rollback_and_history(page, shop) -> None:
    page.login(shop.keys["editor"])
    go(page, "/models/churn")
    versions = page.tab.eval_on_selector_all(
        "#versions-table tbody tr", "rs => rs.map(r => r.dataset.version)"
    )
    assert versions == ["2", "1"]
    assert (row_stage(page, "2"), row_stage(page, "1")) == ("production", "archived")
    assert page.text("#versions-table tr[data-version='2'] .aliases") == "@production"
    assert "accuracy 0.9" in page.text("#versions-table tr[data-version='2'] .metrics")
    assert "editor-key" in page.text("#versions-table tr[data-version='2']")
    # The selected version (v2): its model card and lineage.
    assert page.text("#model-card").startswith("# Model card: churn v2")
    assert page.text("#lineage-job") == "job-42"
    assert page.text("#lineage-training-run") == LINEAGE["training_run_id"]
    assert page.tab.get_attribute("#lineage-run", "href").startswith("#/runs/")
    feast = page.text("#lineage-feast")
    assert "feast.view.customer_stats" in feast and "customer_stats:spend_30d" in feast
    # Its files, listed through the API (no server path on the page).
    page.tab.wait_for_selector("#lineage-files li")
    assert "MLmodel" in page.text("#lineage-files")
    assert "/artifacts/" not in page.text("#lineage")
    page.shot("model")

    # Roll back (a reason is required): v1 serves production again.
    page.tab.click("#rollback")
    settle(page, lambda: confirm(page, "bad v2"))
    assert (row_stage(page, "1"), row_stage(page, "2")) == ("production", "development")
    assert "v1 is in production again" in page.text("#action-result")

    # Promote v2: to staging it passes, and its badge and alias follow.
    assert page.text("#promote") == "Promote v2 to staging"
    page.tab.click("#promote")
    settle(page, lambda: confirm(page, "try again"))
    assert row_stage(page, "2") == "staging" and "moved to staging" in page.text("#action-result")
    assert page.text("#versions-table tr[data-version='2'] .aliases") == "@staging"

    # To production, the gate refuses, and says why.
    assert page.text("#promote") == "Promote v2 to production"
    page.tab.click("#promote")
    confirm(page)
    page.tab.wait_for_selector("#action-error .error")
    refusal = page.text("#action-error")
    assert "GATE_FAILED" in refusal
    assert "no approved approval request for this version" in refusal
    assert "evaluation is recorded for this version" in refusal
    assert page.tab.locator("#action-error .reasons li").count() == 2
    assert row_stage(page, "2") == "staging"
    page.shot("model-refused")

    # The history: every move, newest first, and production at a time.
    settle(page, lambda: page.tab.click("#history-link"))
    moves = page.tab.eval_on_selector_all(
        "#history li", "ls => ls.map(l => [l.dataset.version, l.dataset.to])"
    )
    assert moves[0] == ["2", "staging"]
    assert ["1", "production"] in moves and ["2", "development"] in moves
    timeline = page.text("#history")
    assert "bad v2" in timeline and "ship v2" in timeline and "by editor-key" in timeline
    page.tab.fill("#prod-at", shop.v2_in_production)
    page.tab.click("#prod-at-submit")
    page.tab.wait_for_selector("#prod-at-result[data-version]")
    assert page.tab.get_attribute("#prod-at-result", "data-version") == "2"
    page.tab.fill("#prod-at", "2000-01-01T00:00:00Z")
    page.tab.click("#prod-at-submit")
    page.tab.wait_for_selector("#prod-at-result[data-version='']")
    assert "no version was in production" in page.text("#prod-at-result")
    page.tab.fill("#prod-at", datetime.now(UTC).isoformat())
    page.tab.click("#prod-at-submit")
    page.tab.wait_for_selector("#prod-at-result[data-version='1']")
    page.shot("history")
    expected(page, 409)


def test_another_tenants_key_sees_none_of_it(page, shop, api, services) -> None:
    other = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("uio")).tenant_id)
    page.login(other.keys["editor"])
    assert listed(page) == [] and "No models yet" in page.text("#models-empty")
    go(page, "/models?q=churn")
    assert listed(page) == []
    for path in ("/models/churn", "/models/churn/history"):
        go(page, path)
        assert "NOT_FOUND" in page.text("#model-error"), path
        assert page.tab.locator("#versions-table, #history, #model-card").count() == 0
    expected(page, 404)
    other.close()


def test_a_viewer_reads_but_the_actions_are_off(page, shop) -> None:
    page.login(shop.keys["viewer"])
    go(page, "/models/fraud")
    assert row_stage(page, "1") == "staging"
    assert page.tab.is_disabled("#promote") and page.tab.is_disabled("#rollback")
    assert "read only" in page.text("#version-panel")
