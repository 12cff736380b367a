"""MLflow's own web UI, served under ``/mlflow/``, scoped to the caller's tenant.

The UI ships in the ``mlflow`` wheel (``mlflow/server/js/build``). Its page loads its
scripts from ``static-files/`` and makes every API call relative to the page
(``fetch("ajax-api/2.0/mlflow/experiments/search")``, ``graphql``, ``get-artifact``); it
routes with the URL's fragment (``/mlflow/#/models``), so the page itself is always
``/mlflow/`` and every call lands under ``/mlflow/``. Those calls are handed to the
MLflow door with the prefix taken off, so the UI gets exactly what a stock MLflow client
gets with the same key: the tenant from the credential, the roles of its key, the
lifecycle's gates.

The credential is the browser's own Basic auth, with the API key (or a JWT) as the
password and any user name: the page and every call need it, and an unauthenticated
request is answered 401 with ``WWW-Authenticate: Basic realm="matih-ml"``, so the browser
asks. The scripts and styles are the same for everyone and are served without one.

A few of the UI's calls are answered here, because nothing in the protocol serves them:
``users/current`` (only MLflow's auth plugin has it; ``{}`` tells the UI there is no user
management), the assistant's ``config`` and ``providers`` (MLflow's local coding
assistant, which matih-ml does not run). ``server-info`` comes from the door with
workspaces and the AI gateway switched off: the UI then shows no workspace picker and
sends no workspace header, since the tenant is the credential's.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import mlflow
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from matih_ml.api.deps import authenticate
from matih_ml.api.mlflow.routes import door_of
from matih_ml.auth.principal import Principal
from matih_ml.errors import UnauthenticatedError

PREFIX = "/mlflow"
BUILD = Path(mlflow.__file__).parent / "server" / "js" / "build"
REALM = 'Basic realm="matih-ml"'

# Where the UI opens from our pages: the classic-ML view of the experiments, not the
# GenAI one (whose pages call the trace APIs matih-ml does not offer).
ENTRY = f"{PREFIX}/#/experiments?workflowType=machine_learning"

# The UI's calls that go to the MLflow door (as MLflow paths, relative to the page).
_DOOR_PREFIXES = ("ajax-api/",)
_DOOR_EXACT = frozenset({"graphql", "get-artifact", "model-versions/get-artifact"})

# The page: no framing by other sites, no sniffing, no referrer to links it opens. Its
# scripts, styles and calls are this origin's only; the UI's styles are inline (CSS in JS)
# and its charts and artifact previews use data: and blob: URLs.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; frame-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# What the UI's assistant panel needs to show "not set up" (MLflow's own empty answers).
_ASSISTANT_CONFIG = {"providers": {}, "projects": {}, "remote_access_allowed": False}
_ASSISTANT_PROVIDERS = {"providers": [], "resolved": None, "gateway_vendor_options": {}}

router = APIRouter(include_in_schema=False)
_static = StaticFiles(directory=BUILD, check_dir=False)


def _credential(request: Request) -> str | None:
    """The key or JWT a request presents: Basic (as the password) or Bearer."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


async def _principal(request: Request) -> Principal | None:
    """The caller, or None when the request carries no valid credential."""
    token = _credential(request)
    if token is None:
        return None
    try:
        return await authenticate(request.app.state.services, token)
    except UnauthenticatedError:
        return None


def _challenge(json_body: bool) -> Response:
    """401 with a Basic challenge, so that a browser asks for the key."""
    message = "matih-ml: sign in with any user name and an API key (or a JWT) as the password."
    headers = {"WWW-Authenticate": REALM, "Cache-Control": "no-store"}
    if json_body:
        return JSONResponse(
            {"error_code": "UNAUTHENTICATED", "message": message},
            status_code=401,
            headers=headers,
        )
    return HTMLResponse(
        f"<!doctype html><title>matih-ml</title><p>{message}</p>",
        status_code=401,
        headers={**headers, **_PAGE_HEADERS},
    )


@router.get("/")
def service_root() -> RedirectResponse:
    """The service's root opens MLflow's UI, so that the links MLflow's client prints
    (``http://host:8080/#/experiments/1/runs/...``) work: the browser keeps the fragment
    through the redirect."""
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get(PREFIX)
def mlflow_root() -> RedirectResponse:
    """The UI lives under /mlflow/ (its calls are relative to that folder)."""
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get(f"{PREFIX}/")
async def mlflow_index(request: Request) -> Response:
    """MLflow's page, for a caller with a valid credential."""
    if await _principal(request) is None:
        return _challenge(json_body=False)
    page = (BUILD / "index.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.api_route(f"{PREFIX}/static-files/{{path:path}}", methods=["GET", "HEAD"])
async def mlflow_static(path: str, request: Request) -> Response:
    """The UI's scripts, styles and images: the same for everyone, no credential needed."""
    try:
        response = await _static.get_response(path, request.scope)
    except HTTPException as exc:
        return Response(status_code=exc.status_code)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Names under static/ carry a content hash: they never change.
    immutable = path.startswith("static/")
    response.headers["Cache-Control"] = (
        "public, max-age=31536000, immutable" if immutable else "no-cache"
    )
    return response


# Answered here (see the module's docstring), behind the credential like the rest.
_LOCAL: dict[tuple[str, str], dict] = {
    ("GET", "ajax-api/2.0/mlflow/users/current"): {},
    ("GET", "ajax-api/3.0/mlflow/assistant/config"): _ASSISTANT_CONFIG,
    ("GET", "ajax-api/3.0/mlflow/assistant/providers"): _ASSISTANT_PROVIDERS,
}
_SERVER_INFO = "ajax-api/3.0/mlflow/server-info"


@router.api_route(
    f"{PREFIX}/{{rest:path}}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
)
async def mlflow_call(rest: str, request: Request) -> Response:
    """One of the UI's API calls: to the MLflow door, as the MLflow path ``/<rest>``."""
    if not (rest.startswith(_DOOR_PREFIXES) or rest in _DOOR_EXACT):
        return JSONResponse(
            {"error_code": "ENDPOINT_NOT_FOUND", "message": f"Nothing at {PREFIX}/{rest[:200]}."},
            status_code=404,
        )
    local = _LOCAL.get((request.method, rest))
    if local is not None:
        if await _principal(request) is None:
            return _challenge(json_body=True)
        return JSONResponse(local, headers={"Cache-Control": "no-store"})
    response = await door_of(request).handle(request, f"/{rest}")
    if rest == _SERVER_INFO and request.method == "GET" and response.status_code == 200:
        response = _ui_server_info(response)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _ui_server_info(response: Response) -> Response:
    """The server's capabilities as the UI should see them: one tenant, no AI gateway."""
    info = json.loads(response.body)
    info["workspaces_enabled"] = False
    info["features_enabled"] = {**info.get("features_enabled", {}), "gateway": False}
    return JSONResponse(info, headers={"Cache-Control": "no-store"})
