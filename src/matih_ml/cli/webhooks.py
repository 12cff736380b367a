"""``matih-ml webhooks``: a tenant's webhooks and their deliveries."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, TenantOpt, emit, handles_errors, load_services

webhooks_app = typer.Typer(help="Webhooks per tenant.", no_args_is_help=True)


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
