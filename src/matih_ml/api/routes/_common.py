"""What every router declares: the error responses, for generated clients."""

from __future__ import annotations

from typing import Any

from matih_ml.contracts.schemas import ErrorBody

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (401, "No credential, or one that is not valid"),
        (403, "The credential's role does not allow this"),
        (404, "Not found (or another tenant's)"),
        (409, "Conflicts with the current state"),
        (413, "The request body is over the limit"),
        (422, "The input is not valid"),
        (503, "A dependency is unavailable"),
    )
}
