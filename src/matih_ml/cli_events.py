"""``matih-ml events``, ``matih-ml webhooks`` and ``matih-ml dispatcher``."""

from __future__ import annotations

import contextlib
import json
import signal
from datetime import UTC, datetime
from typing import Annotated

import typer

from matih_ml.cli_output import JsonOpt, TenantOpt, emit, handles_errors, load_services, stderr
from matih_ml.errors import ValidationError

events_app = typer.Typer(help="Lifecycle events: the feed, and replays.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhooks per tenant.", no_args_is_help=True)


@events_app.command("list")
@handles_errors
def events_list(
    tenant: TenantOpt,
    after: Annotated[int, typer.Option(help="Only events after this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """A tenant's events, oldest first."""
    services = load_services()
    services.tenants.ensure(tenant, create=False)
    items = services.events.feed(tenant, after=after, limit=limit)
    emit(items, ("sequence", "type", "subject", "time", "id"), as_json, f"Events of {tenant}")


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


@webhooks_app.command("create")
@handles_errors
def webhooks_create(
    tenant: TenantOpt,
    url: Annotated[str, typer.Option(help="Where to POST events.")],
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only this event type (repeatable).")
    ] = None,
    description: str = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a webhook; prints its signing secret, once."""
    services = load_services()
    services.tenants.ensure(tenant, create=False)
    hook, secret = services.webhooks.create(
        tenant, url, event_types=event_type, description=description, actor="cli"
    )
    emit(
        {**hook.__dict__, "secret": secret},
        ("id", "url", "event_types", "secret"),
        as_json,
        "Webhook (the secret is shown once)",
    )


@webhooks_app.command("list")
@handles_errors
def webhooks_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """A tenant's webhooks."""
    services = load_services()
    emit(
        services.webhooks.list(tenant),
        ("id", "url", "event_types", "active"),
        as_json,
        f"Webhooks of {tenant}",
    )


@webhooks_app.command("delete")
@handles_errors
def webhooks_delete(tenant: TenantOpt, webhook_id: str, as_json: JsonOpt = False) -> None:
    """Remove a webhook (its undelivered events are cancelled)."""
    services = load_services()
    services.webhooks.delete(tenant, webhook_id)
    if as_json:
        typer.echo(json.dumps({"deleted": webhook_id}))


@webhooks_app.command("deliveries")
@handles_errors
def webhooks_deliveries(
    tenant: TenantOpt, webhook_id: str, state: str | None = None, as_json: JsonOpt = False
) -> None:
    """A webhook's deliveries: state, attempts, last error."""
    services = load_services()
    items = services.webhooks.deliveries(tenant, webhook_id, state=state)
    emit(
        items, ("sequence", "event_type", "state", "attempts", "last_error"), as_json, "Deliveries"
    )


@handles_errors
def dispatcher() -> None:
    """Deliver events on its own (when replicas run with MATIH_DISPATCHER=0). Any
    number may run; stop it with Ctrl-C or SIGTERM."""
    services = load_services()
    d = services.dispatcher
    signal.signal(signal.SIGTERM, lambda *_: d.stop())
    stderr.print("Dispatching events; Ctrl-C to stop.")
    with contextlib.suppress(KeyboardInterrupt):
        d.run_forever()
