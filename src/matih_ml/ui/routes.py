"""Serve the web pages: one HTML shell, its modules, and vendored assets, all local.

The pages hold no server session. The login page keeps the user's API key or JWT in the
tab's sessionStorage and every page calls ``/api/v1`` with it, so the pages have exactly
the API's credentials, roles and tenant rules. A strict Content-Security-Policy allows
scripts, styles and requests from this origin only (no inline script): data rendered into
a page cannot run as code, and no page reaches the internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Modules change with the package: revalidate rather than serve a stale page.
    (b"cache-control", b"no-cache"),
]

router = APIRouter(include_in_schema=False)


class _Secured:
    """Add the pages' security headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self._app(scope, receive, with_headers)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    """The pages live under /ui/."""
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
def ui_index() -> FileResponse:
    """The pages' shell: every page is a module loaded into it."""
    headers = {k.decode(): v.decode() for k, v in _HEADERS}
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)


def static_app() -> ASGIApp:
    """The pages' modules, styles and vendored libraries (mounted at /ui/static)."""
    return _Secured(StaticFiles(directory=STATIC))
