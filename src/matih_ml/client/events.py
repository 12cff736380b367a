"""``client.events``: the pull feed of the tenant's events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from matih_ml.client._base import API, SubClient, implements, query
from matih_ml.contracts.protocols import EventsContract
from matih_ml.contracts.schemas import EventFeed

_EVENTS = f"{API}/events"


@implements(EventsContract)
class EventsClient(SubClient):
    """The pull feed of the tenant's events (``/api/v1/events``)."""

    def feed(
        self, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 100
    ) -> EventFeed:
        params = query(after=after, types=list(types) if types else None, limit=limit)
        return self._t.call(EventFeed, "GET", _EVENTS, params=params)

    def all(
        self, *, after: int = 0, types: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every event after ``after`` up to now, oldest first (then the iterator ends;
        call again with the last ``sequence`` to go on)."""
        while True:
            page = self.feed(after=after, types=types, limit=1000)
            yield from page.items
            if not page.items:
                return
            after = page.cursor

    def schemas(self) -> dict[str, Any]:
        return self._t.call(dict[str, Any], "GET", f"{_EVENTS}/schemas")
