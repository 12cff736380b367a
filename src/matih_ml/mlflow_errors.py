"""Translate MLflow's exceptions into ours, in one place.

Callers never see a bare ``MlflowException``: every MLflow call in the services
runs inside :func:`translated`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from matih_ml.errors import (
    ConflictError,
    MatihError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from matih_ml.faults import unavailable

_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "ENDPOINT_NOT_FOUND", "NOT_FOUND"}
_CONFLICT = {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "ABORTED", "RESOURCE_CONFLICT"}
_INVALID = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE", "MALFORMED_REQUEST"}
_UNAVAILABLE = {"TEMPORARILY_UNAVAILABLE", "SERVICE_UNDER_MAINTENANCE", "REQUEST_LIMIT_EXCEEDED"}


def translate(exc: MlflowException, what: str = "", *, bad_input: bool = False) -> MatihError:
    """Map an MLflow exception to the matching :class:`MatihError`.

    Args:
        exc: The exception MLflow raised.
        what: What was being done, for the message (e.g. ``"model 'churn'"``).
        bad_input: The call carried caller-made input MLflow parses itself (a page
            token): MLflow's internal errors then mean that input was bad.

    Returns:
        The error to raise instead (chained by the caller).
    """
    code = exc.error_code
    message = exc.message if isinstance(exc.message, str) else str(exc)
    details = {"backend_code": code}
    if code in _NOT_FOUND:
        return NotFoundError(f"{what} not found." if what else message, details=details)
    if code in _CONFLICT:
        return ConflictError(f"{what} already exists." if what else message, details=details)
    if code in _INVALID:
        return ValidationError(message, details=details)
    if bad_input and code == "INTERNAL_ERROR":
        return ValidationError(f"The request is not valid: {message}", details=details)
    # MLflow wraps the driver's error: name the dependency that is down when it says.
    cause = exc.__cause__ or exc.__context__
    down = unavailable(cause) if cause is not None else None
    if down is not None:
        return down
    if code in _UNAVAILABLE:
        return UnavailableError(message, details=details)
    return UnavailableError(f"The MLflow backend failed: {message}", details=details)


@contextmanager
def translated(what: str = "", *, bad_input: bool = False) -> Iterator[None]:
    """Run MLflow calls, raising our errors in place of MLflow's.

    Args:
        what: What is being looked up, used in not-found and duplicate messages.
        bad_input: See :func:`translate`.
    """
    try:
        yield
    except MatihError:
        raise
    except MlflowException as exc:
        raise translate(exc, what, bad_input=bad_input) from exc
    except Exception as exc:
        down = unavailable(exc)
        if down is None:
            raise
        raise down from exc
