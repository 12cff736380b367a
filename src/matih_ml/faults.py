"""Recognising a dependency that is down, whatever library reports it.

PostgreSQL, S3 and a remote MLflow server each fail in their own library's words
(SQLAlchemy, psycopg, botocore, requests), often wrapped by MLflow. A caller gets
one answer for all of them: :class:`~matih_ml.errors.UnavailableError` (HTTP 503),
naming the dependency, never a 500 with a traceback.
"""

from __future__ import annotations

from matih_ml.errors import UnavailableError

_DATABASE = "The metadata database cannot be reached; try again shortly."
_ARTIFACTS = "The artifact store cannot be reached; try again shortly."
_MLFLOW = "The MLflow server cannot be reached; try again shortly."


def _kind(exc: BaseException) -> tuple[str, str] | None:
    """(dependency, message) if ``exc`` itself says a dependency is unreachable."""
    import botocore.exceptions as boto
    import requests
    import sqlalchemy.exc as sa

    if isinstance(exc, sa.DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, sa.OperationalError | sa.InterfaceError)
    ):
        return "database", _DATABASE
    if isinstance(exc, sa.TimeoutError):  # the connection pool is exhausted
        return "database", _DATABASE
    try:
        import psycopg

        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return "database", _DATABASE
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    if isinstance(
        exc,
        boto.EndpointConnectionError
        | boto.ConnectionClosedError
        | boto.ConnectTimeoutError
        | boto.ReadTimeoutError
        | boto.HTTPClientError,
    ):
        return "artifacts", _ARTIFACTS
    if type(exc).__name__ == "S3UploadFailedError" and "connect" in str(exc).lower():
        # boto3 reports a failed upload as text, without chaining the cause.
        return "artifacts", _ARTIFACTS
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return "mlflow", _MLFLOW
    return None


def unavailable(exc: BaseException) -> UnavailableError | None:
    """The 503 to raise for ``exc`` if it (or what it wraps) is a dependency being down.

    Args:
        exc: Any exception.

    Returns:
        An :class:`UnavailableError` naming the dependency, or None if ``exc`` is
        something else (a bug, bad input).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UnavailableError):
            return current
        seen.add(id(current))
        found = _kind(current)
        if found is not None:
            dependency, message = found
            return UnavailableError(message, details={"dependency": dependency})
        current = current.__cause__ or current.__context__
    return None
