"""The approvers' queue in a browser: the four-eyes refusal as the API words it, an
approval by someone else that lets the version be promoted, a rejection with its reason,
and another tenant's empty queue."""

from __future__ import annotations

from api.helpers import ok, register
from conftest import ApiTenant, new_tenant_id

REQUIRE_APPROVAL = {"production": {"require_approval": True}}


def sign_in(page, credential: str, hash_path: str) -> None:
    """Log in through the login form's session, then open ``hash_path``.

    The credential goes where the login page puts it (the tab's sessionStorage), so the
    test does not depend on the models page the login form goes to.
    """
    if page.tab.url.startswith(page.base) and page.tab.is_visible("#logout"):
        page.tab.click("#logout")
        page.tab.wait_for_selector("main[data-page='login'][data-ready='true']", state="attached")
    else:
        page.open("/login")
    page.tab.evaluate("k => sessionStorage.setItem('matih.credential', k)", credential)
    page.tab.evaluate("h => { location.hash = h; }", hash_path)
    name = hash_path.strip("/").split("/")[0]
    page.tab.wait_for_selector(
        f"main[data-page='{name}'][data-ready='true']", state="attached", timeout=20_000
    )


def decide(page, approval_id: int, button: str, reason: str = "") -> None:
    page.tab.click(f"#approvals-table [data-approval='{approval_id}'] button.{button}")
    page.tab.wait_for_selector("#confirm[open]")
    if reason:
        page.tab.fill("#confirm-reason", reason)
    page.tab.click("#confirm-ok")
    page.tab.wait_for_selector("#confirm", state="hidden")


def test_queue_four_eyes_approve_reject_and_isolation(page, api, services, saved_sklearn_model):
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("uiap")).tenant_id)
    other = ApiTenant(
        api, services, services.tenants.create_tenant(new_tenant_id("uiox")).tenant_id
    )
    try:
        ok(t.admin.put("/api/v1/policy", json=REQUIRE_APPROVAL))
        for name in ("churn", "fraud"):
            register(t.editor, saved_sklearn_model, name)
            stage = {"version": "1", "stage": "staging"}
            ok(t.editor.put(f"/api/v1/models/{name}/stage", json=stage))
        # The admin asks for churn (an admin may also approve, but not their own request);
        # the editor asks for fraud.
        own = ok(
            t.admin.post("/api/v1/models/churn/versions/1/approvals", json={"comment": "ship it"}),
            201,
        )
        theirs = ok(
            t.editor.post(
                "/api/v1/models/fraud/versions/1/approvals",
                json={"comment": "<b>not html</b> AUC up 2 pts"},
            ),
            201,
        )

        # An editor sees the queue but has no buttons: deciding needs approver or admin.
        sign_in(page, t.keys["editor"], "/approvals")
        rows = page.tab.locator("#approvals-table tbody tr")
        assert rows.count() == 2
        assert page.tab.locator("#approvals-table button").count() == 0
        assert "<b>not html</b> AUC up 2 pts" in page.text(f"[data-approval='{theirs['id']}']")
        assert page.tab.is_visible("#approvals-readonly")

        # The requester tries to approve their own request: the API's four-eyes refusal.
        sign_in(page, t.keys["admin"], "/approvals")
        decide(page, own["id"], "approve")
        page.tab.wait_for_selector("#approval-error .error")
        refusal = page.text("#approval-error")
        assert "FORBIDDEN" in refusal and "four eyes" in refusal
        assert page.tab.get_attribute("#approval-error .error", "data-code") == "FORBIDDEN"
        assert page.tab.is_visible(f"#approvals-table [data-approval='{own['id']}']")
        page.shot("approval-refused")
        # Chromium logs the refusal's 403 as a failed resource: an expected answer here.
        expected = [p for p in page.problems if "status of 403" in p]
        assert len(expected) == 1, page.problems
        page.problems.remove(expected[0])
        assert ok(t.viewer.get(f"/api/v1/approvals/{own['id']}"))["status"] == "pending"

        # Someone else approves it in the confirm dialog: it leaves the queue.
        sign_in(page, t.keys["approver"], "/approvals")
        decide(page, own["id"], "approve", reason="checked the evaluation")
        page.tab.wait_for_selector(f"#decided-table [data-approval='{own['id']}']")
        assert page.tab.locator(f"#approvals-table [data-approval='{own['id']}']").count() == 0
        decided = page.text(f"#decided-table [data-approval='{own['id']}']")
        assert "approved" in decided and "approver-key" in decided
        assert "checked the evaluation" in decided
        assert "can now be promoted" in page.text("#approval-notice")
        page.shot("approvals")
        md = ok(
            t.admin.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "production"})
        )
        assert md["stage"] == "production"

        # A rejection needs a reason: the dialog stays open without one.
        page.tab.click(f"#approvals-table [data-approval='{theirs['id']}'] button.reject")
        page.tab.wait_for_selector("#confirm[open]")
        page.tab.click("#confirm-ok")
        assert page.tab.is_visible("#confirm[open]")
        page.tab.fill("#confirm-reason", "needs a shadow run first")
        page.tab.click("#confirm-ok")
        row = f"#decided-table [data-approval='{theirs['id']}']"
        page.tab.wait_for_selector(row)
        assert "rejected" in page.text(row) and "needs a shadow run first" in page.text(row)
        assert page.tab.is_visible("#approvals-empty")
        # After the promotion the approval reads as applied.
        page.tab.reload()
        page.ready()
        assert "applied" in page.text(f"#decided-table [data-approval='{own['id']}']")

        # Another tenant's key sees an empty queue and no decision.
        sign_in(page, other.keys["approver"], "/approvals")
        assert page.tab.is_visible("#approvals-empty") and page.tab.is_visible("#decided-empty")
        assert page.tab.locator("[data-approval]").count() == 0
        assert "churn" not in page.text() and "fraud" not in page.text()
    finally:
        t.close()
        other.close()
