"""Checks both doors make before a call leaves the caller: a body against its wire type,
and a model file read into bytes.

The HTTP client checks a body before sending it, and the in-process doors check the same
fields against the same type, so a value the REST API refuses is refused by every door
with the same message (``field: problem``, every problem in ``details["problems"]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from matih_ml.contracts.protocols import ModelFile
from matih_ml.errors import ValidationError

B = TypeVar("B", bound=BaseModel)


def invalid(exc: PydanticValidationError) -> ValidationError:
    """Our ``ValidationError`` for pydantic's: the first bad field in the message, all of
    them in ``details["problems"]``."""
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    if not problems:
        return ValidationError("The body is not valid.", details={"problems": []})
    first = problems[0]
    return ValidationError(f"{first['field']}: {first['message']}", details={"problems": problems})


def as_model(model: type[B], value: object) -> B:
    """``value`` (a mapping, or anything pydantic reads) as the wire type ``model``,
    refused as the REST API refuses it.

    Raises:
        ValidationError: Naming the first bad field.
    """
    try:
        return model.model_validate(value)
    except PydanticValidationError as exc:
        raise invalid(exc) from None


def checked(model: type[B], **fields: Any) -> B:
    """``fields`` as the wire type ``model`` (see :func:`as_model`)."""
    return as_model(model, fields)


def file_bytes(file: ModelFile) -> tuple[str, bytes]:
    """(file name, bytes) of a model file given as bytes, a path, or an open binary file.

    Raises:
        ValidationError: The file was opened in text mode.
    """
    if isinstance(file, bytes | bytearray):
        return "model", bytes(file)
    if isinstance(file, str | os.PathLike):
        p = Path(file)
        return p.name, p.read_bytes()
    data: Any = file.read()
    if not isinstance(data, bytes):
        raise ValidationError(
            "The model file must be opened in binary mode ('rb').", details={"field": "file"}
        )
    return Path(str(getattr(file, "name", "model"))).name or "model", data
