"""The tenant's event feed, in process (``EventsContract``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matih_ml.auth.principal import Permission
from matih_ml.contracts.protocols import EventsContract
from matih_ml.contracts.schemas import EventFeed
from matih_ml.contracts.walk import EventsWalk
from matih_ml.errors import ValidationError
from matih_ml.events.catalog import EventType, json_schemas
from matih_ml.local._base import Door, implements

# The most one page may hold: the REST routes' ``limit`` query says the same (le=1000).
MAX_PAGE = 1000
# The highest sequence the feed's route accepts as ``after``.
MAX_SEQUENCE = 2**62


def check_limit(limit: int, most: int = MAX_PAGE) -> int:
    """``limit`` if it is 1 to ``most``.

    Over REST the query's bounds refuse it first (422); in process this is the check, so
    that no caller reads an unbounded page (SQL takes a negative limit as none).

    Raises:
        ValidationError: Outside 1 to ``most``.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise ValidationError(
            f"limit must be an integer from 1 to {most}.", details={"field": "limit"}
        )
    return limit


def _event_types(types: Sequence[str] | None) -> tuple[EventType, ...]:
    """The named event types; the route's query has parsed them already (``EventType`` is
    a ``str``), an in-process caller gives their names."""
    if isinstance(types, str):
        types = [types]  # one name, not its letters
    out = []
    for t in types or ():
        try:
            out.append(EventType(t))
        except ValueError:
            raise ValidationError(
                f"Unknown event type {str(t)[:60]!r}.",
                details={"field": "types", "known": [e.value for e in EventType]},
            ) from None
    return tuple(out)


@implements(EventsContract)
class LocalEvents(EventsWalk, Door):
    """The pull feed of the tenant's events, and the catalog's schemas."""

    def feed(
        self, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 100
    ) -> EventFeed:
        tenant = self._need(Permission.READ)
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_SEQUENCE:
            raise ValidationError(
                "after must be a sequence number of 0 or more.", details={"field": "after"}
            )
        wanted = _event_types(types)
        items = self._s.events.feed(tenant, after=after, types=wanted, limit=check_limit(limit))
        # An empty page keeps the caller's place, so polling with the cursor never rewinds.
        cursor = items[-1]["sequence"] if items else after
        return EventFeed(items=items, cursor=cursor)

    def schemas(self) -> dict[str, Any]:
        self._need(Permission.READ)
        return json_schemas()
