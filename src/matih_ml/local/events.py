"""The tenant's event feed, in process (``EventsContract``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matih_ml.auth.principal import Permission
from matih_ml.contracts.protocols import EventsContract
from matih_ml.contracts.schemas import EventFeed
from matih_ml.contracts.walk import EventsWalk
from matih_ml.events.catalog import json_schemas, parse_types
from matih_ml.local._base import MAX_PAGE, MAX_SEQUENCE, Door, implements, within


@implements(EventsContract)
class LocalEvents(EventsWalk, Door):
    """The pull feed of the tenant's events, and the catalog's schemas."""

    def feed(
        self, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 100
    ) -> EventFeed:
        tenant = self._need(Permission.READ)
        within(after, "after", 0, MAX_SEQUENCE)
        wanted = parse_types(types, "types")
        items = self._s.events.feed(
            tenant, after=after, types=wanted, limit=within(limit, "limit", 1, MAX_PAGE)
        )
        # An empty page keeps the caller's place, so polling with the cursor never rewinds.
        cursor = items[-1]["sequence"] if items else after
        return EventFeed(items=items, cursor=cursor)

    def schemas(self) -> dict[str, Any]:
        self._need(Permission.READ)
        return json_schemas()
