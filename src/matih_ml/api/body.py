"""Reading JSON request bodies: one parser, whichever code parses the body.

Routes that parse their own bytes (ingest, predict) call :func:`parse_json`; routes
whose body FastAPI parses are built as :class:`JsonBodyRoute`, whose request reads
JSON through the same function. Either way a body that is not UTF-8, not JSON, or
nested deeper than the interpreter can parse is a 422 naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from matih_ml.errors import ValidationError


def parse_json(raw: bytes | str) -> Any:
    """Parse a request body (or a form field) as JSON.

    Args:
        raw: The body's bytes, or text.

    Returns:
        The parsed value.

    Raises:
        ValidationError: If it is not UTF-8, not JSON, or nested too deeply to parse.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        # json's C scanner stops at the interpreter's recursion limit (about 1,000
        # levels); nothing we accept nests that deep, so it is bad input, not a bug.
        raise ValidationError(
            "The body is not valid JSON: it is nested too deeply.", details={"field": "body"}
        ) from None
    except UnicodeDecodeError:
        raise ValidationError(
            "The body is not valid JSON: it is not UTF-8 text.", details={"field": "body"}
        ) from None
    except ValueError as exc:  # json.JSONDecodeError included
        raise ValidationError(
            f"The body is not valid JSON: {exc}.", details={"field": "body"}
        ) from None


class InvalidBodyError(HTTPException):
    """A body FastAPI was parsing is not JSON; carries our error's message and details.

    An HTTPException, because FastAPI passes those on unchanged and turns any other
    error raised while it reads a body into a bare 400.
    """

    def __init__(self, error: ValidationError) -> None:
        super().__init__(status_code=422, detail=error.message)
        self.details = error.details


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body())
            except ValidationError as exc:
                raise InvalidBodyError(exc) from None
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose JSON body, when FastAPI parses it, goes through :func:`parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given a request whose ``json()`` is ours."""
        handler = super().get_route_handler()
        if self.body_field is None:  # reads its body itself, or has none: nothing to wrap
            return handler

        async def handle(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return handle
