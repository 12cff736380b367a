"""One error hierarchy for the whole service, each with a stable code.

Only these errors are mapped to HTTP statuses (one table, ``STATUS``, which the API's
handlers answer with and the HTTP client reads back); built-in exceptions are never
mapped, so a stray ``KeyError`` stays a bug instead of silently becoming a 404.
"""

from __future__ import annotations

from typing import Any


class MatihError(Exception):
    """Base of every error this package raises on purpose.

    Attributes:
        code: A stable, machine-readable code (``NOT_FOUND``, ``CONFLICT``...).
        message: A sentence for a person, naming the problem.
        details: Extra structured facts (the field, the limit, the reasons).
    """

    code = "INTERNAL"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able body used by the API and the CLI's ``--json``."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(MatihError):
    """The input is malformed: a bad name, a value of the wrong type, a bad step."""

    code = "VALIDATION_ERROR"


class NotFoundError(MatihError):
    """The tenant, experiment, run, model or version does not exist (for this tenant)."""

    code = "NOT_FOUND"


class ConflictError(MatihError):
    """The request clashes with the current state: a duplicate, a non-empty tenant."""

    code = "CONFLICT"


class ForbiddenError(MatihError):
    """The caller is known but its role does not allow the operation."""

    code = "FORBIDDEN"


class UnauthenticatedError(MatihError):
    """No credential, or one that is not valid."""

    code = "UNAUTHENTICATED"


class GateFailedError(MatihError):
    """A lifecycle gate refused a transition; ``details['reasons']`` says why."""

    code = "GATE_FAILED"


class IntegrityError(MatihError):
    """A version's stored files do not match its signature (or it has none where one is
    required): it is neither promoted nor loaded. ``details`` names the files."""

    code = "MODEL_INTEGRITY_FAILED"


class UnavailableError(MatihError):
    """A dependency (database, artifact store, MLflow server) cannot be reached."""

    code = "UNAVAILABLE"


class LimitExceededError(MatihError):
    """A per-tenant limit is reached (e.g. concurrent training jobs); retry later."""

    code = "LIMIT_EXCEEDED"


class PayloadTooLargeError(MatihError):
    """An upload or a batch is over the configured limit."""

    code = "PAYLOAD_TOO_LARGE"


# Each error's HTTP status. It lives here, not in the API layer, so that the HTTP client
# (matih_ml.client) reads answers back into these classes without importing FastAPI.
STATUS: dict[type[MatihError], int] = {
    ValidationError: 422,
    UnauthenticatedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    GateFailedError: 409,
    IntegrityError: 409,
    PayloadTooLargeError: 413,
    LimitExceededError: 429,
    UnavailableError: 503,
}
