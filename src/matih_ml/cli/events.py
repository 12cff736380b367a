"""``matih-ml events``: a tenant's event feed (on a server, or ``--local``), and the
operator's replays of dead-lettered deliveries (on the server's stores)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, emit, handles_errors, load_services, stderr
from matih_ml.cli.target import Target, targeted
from matih_ml.errors import ValidationError

events_app = typer.Typer(help="Lifecycle events: the feed, and replays.", no_args_is_help=True)


@events_app.command("list")
@handles_errors
@targeted
def events_list(
    after: Annotated[int, typer.Option(help="Only events after this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """A tenant's events, oldest first."""
    with target.doors() as ml:
        items = ml.events.feed(after=after, limit=limit).items
    emit(items, ("sequence", "type", "subject", "time", "id"), as_json, "Events")


@events_app.command("replay")
@handles_errors
def events_replay(
    since: Annotated[str, typer.Option(help="ISO time: events recorded since then.")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")] = None,
    delivered_too: Annotated[
        bool, typer.Option("--delivered-too", help="Also send what was delivered already.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send dead-lettered deliveries again (receivers deduplicate by event id)."""
    from matih_ml.events.dispatcher import replay

    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        raise ValidationError(f"--since {since!r} is not an ISO 8601 time.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # stored times are UTC
    services = load_services()
    states = ("dead", "delivered") if delivered_too else ("dead",)
    count = replay(services.db, since=when, tenant_id=tenant, states=states)
    if as_json:
        typer.echo(json.dumps({"replayed": count}))
    else:
        stderr.print(f"{count} deliveries queued again.")
