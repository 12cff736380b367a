"""What every sub-client shares: the transport, path quoting, and the contract's docs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from matih_ml.client.transport import Transport
from matih_ml.contracts.checks import checked

C = TypeVar("C", bound=type)
API = "/api/v1"


def seg(value: str | int) -> str:
    """One path segment (a model, a version, a run id), quoted whole."""
    return quote(str(value), safe="")


def subpath(value: str) -> str:
    """A path that keeps its slashes (an artifact path, a metric key like train/loss)."""
    return quote(value, safe="/")


def query(**values: Any) -> dict[str, Any]:
    """Query parameters without the ones left unset (None)."""
    return {k: v for k, v in values.items() if v is not None}


def plain(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """A body field's mapping as a dict ({} for None)."""
    return dict(mapping) if mapping else {}


def body(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """A request body, checked against the API's own type before it is sent.

    Raises:
        ValidationError: A field is not valid, as the server would say (no request made).
    """
    return checked(model, **fields).model_dump(mode="json")


def implements(contract: type) -> Callable[[C], C]:
    """Give a sub-client's methods its contract's docstrings, where they have none.

    The contract (``matih_ml.contracts.protocols``) holds each method's one text, so
    ``help(client.models.get)`` shows it; tests/client/test_contracts.py checks that the
    signatures agree.
    """

    def apply(cls: C) -> C:
        for name, member in vars(contract).items():
            impl = cls.__dict__.get(name)
            if name.startswith("_") or not callable(member) or impl is None:
                continue
            if not getattr(impl, "__doc__", None):
                impl.__doc__ = member.__doc__
        return cls

    return apply


class SubClient:
    """A sub-client: one domain of the API, over the client's one transport."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._t.url}>"
