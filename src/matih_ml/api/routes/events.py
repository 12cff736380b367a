"""The pull feed of a tenant's events, and the catalog's schemas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import EventFeed
from matih_ml.events.catalog import EventType
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1/events", tags=["events"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.get("", response_model=EventFeed)
async def feed(
    services: ServicesDep,
    who: Reader,
    after: Annotated[int, Query(ge=0, le=2**62, description="The last sequence seen")] = 0,
    types: Annotated[
        list[EventType] | None, Query(description="Only these types (repeat the parameter)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventFeed:
    """The tenant's events after sequence ``after``, oldest first.

    Poll with ``after`` set to the returned ``cursor``; events are numbered 1, 2, 3...
    per tenant in the order their changes were committed.
    """
    door = LocalClient(services, who).events
    return await run_in_threadpool(door.feed, after=after, types=types, limit=limit)


@router.get("/schemas")
def schemas(services: ServicesDep, who: Reader) -> dict[str, Any]:
    """The event catalog: the envelope's JSON schema and each type's ``data`` schema."""
    return LocalClient(services, who).events.schemas()
