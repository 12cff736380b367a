"""The web pages in a real headless Chromium (Debian's), driven by Playwright.

Every test gets a fresh browser context (its own sessionStorage). ``shot`` saves a
screenshot under ``test-artifacts/ui/`` for review. Any console error or failed
request for a page asset fails the test: a page that needs the internet, or breaks the
Content-Security-Policy, shows up here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


# One browser per file, not per session: Playwright's sync API runs an asyncio loop on
# the main thread (switching greenlets), so while it is open the thread has a running
# loop, and any later test on the same worker that calls asyncio.run fails ("cannot be
# called from a running event loop"). Closing it with the file ends that.
@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (make install-browser installs it)")
        pytest.skip("chromium is not installed (make install-browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser tab on the service, with the helpers the tests share."""

    def __init__(self, context, base_url: str) -> None:
        self.context = context
        self.base = base_url
        self.tab = context.new_page()
        self.problems: list[str] = []
        self.tab.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
            ),
        )
        self.tab.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.tab.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        # Nothing may leave the machine: a request to another host fails the test.
        self.tab.route(
            lambda url: not url.startswith(base_url),
            lambda route: (
                self.problems.append(f"external request: {route.request.url}"),
                route.abort(),
            ),
        )

    def open(self, hash_path: str) -> None:
        """Go to ``/ui/#<hash_path>`` and wait until the page has rendered."""
        self.tab.goto(f"{self.base}/ui/#{hash_path}")
        self.ready()

    def ready(self) -> None:
        self.tab.wait_for_selector("main[data-ready='true']", state="attached", timeout=20_000)

    def login(self, credential: str) -> None:
        self.open("/login")
        self.tab.fill("#credential", credential)
        self.tab.click("#login-submit")
        self.tab.wait_for_selector("main[data-page='models'][data-ready='true']", state="attached")

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.tab.screenshot(path=str(path), full_page=True)
        return path

    def text(self, selector: str = "main") -> str:
        return self.tab.inner_text(selector)


@pytest.fixture
def page(browser, api) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = Page(context, api.url)
    yield p
    context.close()
    # 401s are expected answers, not breakage; the API client handles them.
    problems = [x for x in p.problems if "401" not in x]
    assert not problems, problems
