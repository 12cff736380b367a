"""MLflow's REST protocol, served by matih-ml: stock clients, the tenant from their key.

A request goes through these steps, each in one place:

1. **Who**: the credential (``Authorization: Bearer <key or JWT>``, which is what
   ``MLFLOW_TRACKING_TOKEN`` sends, or Basic auth with the key as the password, which is
   what ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` and browsers send). The tenant comes
   from it and from nothing else: a workspace header naming another tenant is refused.
2. **What**: the path is matched against MLflow's own route table (its Flask app's URL
   map), which names the operation.
3. **May they**: the operation's rule in :mod:`.access`; anything unclassified is refused.
4. **Do it**, in a worker thread (MLflow is synchronous), with the tenant's workspace
   bound: either one of our operations (:mod:`.registry_ops`, :mod:`.tracking_ops`,
   :mod:`.artifact_ops`), which go through the lifecycle, the events and the bulk writer,
   or MLflow's own view function, on the service's own stores (:mod:`.stores`).
5. **Answer** in MLflow's format, with artifact locations shown as ``mlflow-artifacts:/``
   URIs (:mod:`.uris`), so that clients upload and download through the service.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mlflow.exceptions import MlflowException
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from matih_ml.api.deps import authenticate
from matih_ml.api.mlflow import access, stores
from matih_ml.api.mlflow.uris import ArtifactUris
from matih_ml.api.quotas import StorageLimitError, TenantLimiter, ThrottledError, charge_request
from matih_ml.auth.principal import Permission, Principal
from matih_ml.errors import (
    ConflictError,
    ForbiddenError,
    GateFailedError,
    IntegrityError,
    LimitExceededError,
    MatihError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)
from matih_ml.faults import unavailable
from matih_ml.services import Services
from matih_ml.tenancy import tenant_scope

log = logging.getLogger(__name__)

WORKSPACE_HEADER = "x-mlflow-workspace"

# Our errors in MLflow's vocabulary (its client turns error_code back into an exception).
_CODES: list[tuple[type[MatihError], int, str]] = [
    (ValidationError, 400, "INVALID_PARAMETER_VALUE"),
    (UnauthenticatedError, 401, "UNAUTHENTICATED"),
    (ForbiddenError, 403, "PERMISSION_DENIED"),
    (NotFoundError, 404, "RESOURCE_DOES_NOT_EXIST"),
    (GateFailedError, 409, "RESOURCE_CONFLICT"),
    (ConflictError, 409, "RESOURCE_CONFLICT"),
    (IntegrityError, 409, "RESOURCE_CONFLICT"),
    (StorageLimitError, 413, "RESOURCE_EXHAUSTED"),
    (PayloadTooLargeError, 413, "INVALID_PARAMETER_VALUE"),
    (LimitExceededError, 429, "REQUEST_LIMIT_EXCEEDED"),
    (UnavailableError, 503, "TEMPORARILY_UNAVAILABLE"),
]


def mlflow_error(status: int, code: str, message: str, **headers: str) -> Response:
    """An error in MLflow's own format: ``{"error_code": ..., "message": ...}``."""
    return Response(
        json.dumps({"error_code": code, "message": message}),
        status_code=status,
        media_type="application/json",
        headers=headers or None,
    )


def error_of(exc: MatihError) -> Response:
    """One of our errors as MLflow's client expects it."""
    for cls, status, code in _CODES:
        if isinstance(exc, cls):
            # A per-tenant limit's refusal carries Retry-After and the RateLimit fields.
            return mlflow_error(status, code, exc.message, **getattr(exc, "headers", {}))
    return mlflow_error(500, "INTERNAL_ERROR", exc.message)


@dataclass(frozen=True)
class FileAnswer:
    """A file to send back (an artifact download), removed afterwards by ``cleanup``."""

    path: str
    filename: str
    cleanup: Callable[[], None]


@dataclass(frozen=True)
class Call:
    """What an operation of ours is given.

    Attributes:
        services: The service layer.
        principal: The caller (its tenant is bound for the call).
        uris: The tenant's artifact locations, as clients see them.
        limiter: The per-tenant limits (points, uploads, storage), if any.
    """

    services: Services
    principal: Principal
    limiter: TenantLimiter | None = None

    @property
    def tenant(self) -> str:
        """The caller's tenant."""
        return self.principal.tenant_id

    @cached_property
    def uris(self) -> ArtifactUris:
        """The tenant's artifact locations, as clients see them."""
        return ArtifactUris(self.services.tenants.tenant_artifact_root(self.tenant))

    def take_points(self, points: int) -> None:
        """Count metric points against the tenant's rate before they are written."""
        if self.limiter is not None:
            self.limiter.take_points(self.tenant, points)

    def upload_slot(self, size: int) -> AbstractContextManager[None]:
        """One of the tenant's upload slots, and room for ``size`` bytes in its storage."""
        return self.limiter.upload(self.tenant, size) if self.limiter else nullcontext()


Op = Callable[..., Any]


def _environ(request: Request, path: str, body: bytes) -> dict[str, Any]:
    """The WSGI environ MLflow's Flask views read, for ``path`` (as PEP 3333 has it)."""
    scope = request.scope
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value.decode("latin-1")
            continue
        key = f"HTTP_{key}"
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def _credential(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UnauthenticatedError("The Basic credential is not valid base64.") from None
        # The key is the password (MLFLOW_TRACKING_PASSWORD); a key given as the user
        # name with no password is accepted too.
        return password or user or None
    return request.headers.get("x-api-key") or None


class MlflowDoor:
    """Serves MLflow's protocol for every tenant, on the service's stores.

    Args:
        services: The service layer (its MLflow backend, tenants, lifecycle, runs).
        limiter: The per-tenant limits of the process (none: unlimited).
    """

    def __init__(self, services: Services, limiter: TenantLimiter | None = None) -> None:
        from mlflow.server import app as flask_app  # MLflow's routes and views

        from matih_ml.api.mlflow import artifact_ops, registry_ops, server_ops, tracking_ops

        stores.install()
        self._services = services
        self._limiter = limiter
        self._flask = flask_app
        self._urls = flask_app.url_map.bind("localhost")
        self._ops: dict[str, Op] = {
            **registry_ops.OPS,
            **tracking_ops.OPS,
            **artifact_ops.OPS,
            **server_ops.OPS,
        }

    @property
    def endpoints(self) -> dict[str, set[str]]:
        """Every MLflow endpoint name, with its paths (for tests and docs)."""
        found: dict[str, set[str]] = {}
        for rule in self._flask.url_map.iter_rules():
            found.setdefault(rule.endpoint, set()).add(rule.rule)
        return found

    async def handle(self, request: Request, path: str) -> Response:
        """Answer one request for MLflow's ``path`` (e.g. ``/api/2.0/mlflow/runs/create``)."""
        try:
            principal = await self._who(request)
        except UnauthenticatedError as exc:
            return mlflow_error(
                401,
                "UNAUTHENTICATED",
                exc.message,
                **{"WWW-Authenticate": 'Basic realm="matih-ml"'},
            )
        try:
            charge_request(request.app, request.scope, principal.tenant_id)
        except ThrottledError as exc:
            return error_of(exc)
        workspace = (request.headers.get(WORKSPACE_HEADER) or "").strip()
        if workspace and workspace != principal.tenant_id:
            return mlflow_error(
                403,
                "PERMISSION_DENIED",
                f"The credential is for tenant {principal.tenant_id!r}; workspace "
                f"{workspace[:80]!r} cannot be reached with it.",
            )
        try:
            endpoint, kwargs = self._urls.match(path, request.method)
        except (NotFound, RequestRedirect):  # a redirect: Werkzeug would merge "//"
            return mlflow_error(404, "ENDPOINT_NOT_FOUND", f"No MLflow endpoint at {path[:200]}.")
        except MethodNotAllowed:
            return mlflow_error(
                405, "BAD_REQUEST", f"{request.method} is not allowed on {path[:200]}."
            )
        rule = access.rule_of(endpoint)
        if isinstance(rule, access.Refusal):
            code = "NOT_IMPLEMENTED" if rule.status == 501 else "PERMISSION_DENIED"
            if rule.status == 409:
                code = "RESOURCE_CONFLICT"
            return mlflow_error(rule.status, code, rule.reason)
        if not principal.can(rule):
            return error_of(_forbidden(principal, rule))
        body = await request.body()
        environ = _environ(request, path, body)
        return await run_in_threadpool(self._run, principal, endpoint, kwargs, environ)

    async def _who(self, request: Request) -> Principal:
        token = _credential(request)
        if not token:
            raise UnauthenticatedError(
                "No credential: set MLFLOW_TRACKING_TOKEN to a matih-ml API key (or "
                "MLFLOW_TRACKING_USERNAME/PASSWORD with the key as the password)."
            )
        return await authenticate(self._services, token)

    def _run(
        self, principal: Principal, endpoint: str, kwargs: dict[str, Any], environ: dict
    ) -> Response:
        call = Call(self._services, principal, self._limiter)
        try:
            with (
                tenant_scope(principal.tenant_id),
                stores.bound(self._services.backend.client),
                self._flask.request_context(environ),
            ):
                op = self._ops.get(endpoint)
                answer = (
                    op(call, **kwargs) if op else self._flask.view_functions[endpoint](**kwargs)
                )
                if isinstance(answer, FileAnswer):
                    return FileResponse(
                        answer.path,
                        filename=answer.filename,
                        background=BackgroundTask(answer.cleanup),
                    )
                flask_response = self._flask.make_response(answer)
                try:
                    data = b"".join(flask_response.iter_encoded())
                finally:
                    flask_response.close()
        except MatihError as exc:
            return error_of(exc)
        except MlflowException as exc:
            return Response(
                _without_sql(exc.serialize_as_json().encode()),
                status_code=exc.get_http_status_code(),
                media_type="application/json",
            )
        except Exception as exc:
            down = unavailable(exc)
            if down is not None:
                return error_of(down)
            log.exception("MLflow operation %s failed", endpoint)
            return mlflow_error(500, "INTERNAL_ERROR", "The operation failed on the server.")
        content_type = flask_response.headers.get("Content-Type", "application/json")
        if content_type.startswith("application/json"):
            data = call.uris.to_client(data)
            if flask_response.status_code >= 400:
                data = _without_sql(data)
        headers = {
            k: v
            for k, v in flask_response.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return Response(
            data, status_code=flask_response.status_code, headers=headers, media_type=content_type
        )


# MLflow's SQL store puts the driver's error, statement included, into its messages.
_SQL_MARKERS = ("(sqlite3.", "(psycopg", "(raised as a result of", "[SQL:", "Error: (")


def _without_sql(data: bytes) -> bytes:
    """An error body whose message stops before any database error text."""
    if not any(m.encode() in data for m in _SQL_MARKERS):
        return data
    try:
        body = json.loads(data)
        message = str(body["message"])
    except (ValueError, KeyError, TypeError):
        return data
    cut = min((i for m in _SQL_MARKERS if (i := message.find(m)) >= 0), default=len(message))
    body["message"] = message[:cut].rstrip(" .:") + "."
    return json.dumps(body).encode()


def _forbidden(principal: Principal, permission: Permission) -> ForbiddenError:
    roles = ", ".join(sorted(r.value for r in principal.roles)) or "none"
    return ForbiddenError(
        f"This MLflow operation needs the {permission.value!r} permission; the "
        f"credential's roles ({roles}) do not grant it."
    )
