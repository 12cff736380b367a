"""The handlers that answer with the one table from errors to HTTP statuses.

The table, ``STATUS``, is in ``matih_ml.errors`` (the HTTP client reads it too).

Every error body is ``{"error": {"code", "message", "details"}}``. Only our own
errors are mapped; anything else is a 500 whose body says nothing of the cause.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from matih_ml.errors import STATUS, MatihError, UnauthenticatedError
from matih_ml.faults import unavailable

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "LIMIT_EXCEEDED",
}


def status_of(exc: MatihError) -> int:
    """The HTTP status for one of our errors."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    """The JSON body of every error response."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(MatihError)
    async def _matih(_: Request, exc: MatihError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, UnauthenticatedError) else None
        # A per-tenant limit's refusal carries Retry-After and the RateLimit fields.
        headers = getattr(exc, "headers", None) or headers
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_of(exc), headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        return JSONResponse(
            error_body(
                "VALIDATION_ERROR", f"{first['field']}: {first['message']}", {"problems": problems}
            ),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(
            # InvalidBodyError (api/body.py) carries details; Starlette's own do not.
            error_body(code, str(exc.detail), getattr(exc, "details", None)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def _dependency(_: Request, exc: Exception) -> JSONResponse:
        status, body = unexpected(exc)
        return JSONResponse(body, status)

    # The libraries that report a dependency being down get handlers of their own;
    # anything else unhandled is answered by UnhandledErrorMiddleware (api/unhandled.py),
    # which, unlike Starlette's outermost middleware, keeps the connection open.
    for exc_type in _dependency_exceptions():
        app.add_exception_handler(exc_type, _dependency)


def unexpected(exc: Exception) -> tuple[int, dict]:
    """The status and body for an exception that is not one of ours, logged.

    A dependency being down is a 503 naming it; anything else is a 500 whose body says
    nothing of the cause (the log has the traceback).
    """
    down = unavailable(exc)
    if down is None:
        log.exception("unhandled error", exc_info=exc)
        return 500, error_body("INTERNAL", "An internal error occurred.")
    log.warning("dependency unavailable: %s (%s: %s)", down.message, type(exc).__name__, exc)
    return 503, error_body(down.code, down.message, down.details)


def _dependency_exceptions() -> list[type[Exception]]:
    import boto3.exceptions
    import botocore.exceptions
    import psycopg
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    return [
        sqlalchemy.exc.SQLAlchemyError,
        psycopg.Error,
        botocore.exceptions.BotoCoreError,
        boto3.exceptions.Boto3Error,
        requests.RequestException,
        MlflowException,
    ]
