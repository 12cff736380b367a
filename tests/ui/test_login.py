"""Logging in and out, and what a bad credential sees."""

from __future__ import annotations

from conftest import ApiTenant, new_tenant_id


def test_log_in_with_a_key_and_out_again(page, api, services) -> None:
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("ui")).tenant_id)
    page.open("/models")  # no session yet: the login page
    assert page.tab.get_attribute("main", "data-page") == "login"
    page.shot("login")
    page.tab.fill("#credential", "mk_not_a_real_key")
    page.tab.click("#login-submit")
    page.tab.wait_for_selector("#login-error .error")
    assert "UNAUTHENTICATED" in page.text("#login-error")

    page.login(t.keys["viewer"])
    assert f"viewer-key @ {t.tenant_id} (viewer)" in page.text("#who")
    page.tab.click("#logout")
    page.tab.wait_for_selector("main[data-page='login'][data-ready='true']")
    assert page.tab.evaluate("sessionStorage.length") == 0
    t.close()


def test_pages_carry_a_strict_content_security_policy(api) -> None:
    import httpx

    for path in ("/ui/", "/ui/static/app.js", "/ui/static/vendor/uPlot.iife.min.js"):
        r = httpx.get(api.url + path)
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(api.url + "/ui", follow_redirects=False).status_code == 307
    assert httpx.get(api.url + "/ui/static/../routes.py").status_code == 404


def test_log_in_with_a_jwt(browser, services) -> None:
    import time
    from dataclasses import replace

    import jwt as pyjwt

    from conftest import LiveServer
    from matih_ml.api.app import create_app
    from matih_ml.auth.jwt_tokens import JwtVerifier
    from ui.browser import Page

    secret = "ui-test-secret-that-is-long-enough-for-hs256"
    settings = services.settings.model_copy(update={"jwt_secret": secret})
    verifier = JwtVerifier(settings, tenant_exists=services.tenants.exists)
    server = LiveServer(create_app(services=replace(services, settings=settings, jwt=verifier)))
    tenant = services.tenants.create_tenant(new_tenant_id("uj")).tenant_id
    token = pyjwt.encode(
        {"sub": "alice", "tenant_id": tenant, "roles": ["approver"], "exp": int(time.time()) + 300},
        secret,
        algorithm="HS256",
    )
    context = browser.new_context()
    try:
        page = Page(context, server.url)
        page.login(token)
        assert f"alice @ {tenant} (approver)" in page.text("#who")
        assert not page.problems, page.problems
    finally:
        context.close()
        server.stop()
