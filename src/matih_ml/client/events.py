"""``client.events``: the pull feed of the tenant's events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matih_ml.client._base import API, SubClient, implements, query
from matih_ml.contracts.protocols import EventsContract
from matih_ml.contracts.schemas import EventFeed
from matih_ml.contracts.walk import EventsWalk

_EVENTS = f"{API}/events"


@implements(EventsContract)
class EventsClient(EventsWalk, SubClient):
    """The pull feed of the tenant's events (``/api/v1/events``)."""

    def feed(
        self, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 100
    ) -> EventFeed:
        params = query(after=after, types=list(types) if types else None, limit=limit)
        return self._t.call(EventFeed, "GET", _EVENTS, params=params)

    def schemas(self) -> dict[str, Any]:
        return self._t.call(dict[str, Any], "GET", f"{_EVENTS}/schemas")
