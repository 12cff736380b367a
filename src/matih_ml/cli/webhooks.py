"""``matih-ml webhooks``: a tenant's webhooks and their deliveries (admins)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, emit, handles_errors
from matih_ml.cli.target import Target, targeted

webhooks_app = typer.Typer(help="Webhooks per tenant.", no_args_is_help=True)


@webhooks_app.command("create")
@handles_errors
@targeted
def webhooks_create(
    receiver: Annotated[str, typer.Argument(help="Where to POST events (http or https).")],
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only this event type (repeatable).")
    ] = None,
    description: str = "",
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Add a webhook; prints its signing secret, once."""
    with target.doors() as ml:
        row = ml.webhooks.create(receiver, event_types=event_type or (), description=description)
    emit(row, ("id", "url", "event_types", "secret"), as_json, "Webhook (the secret is shown once)")


@webhooks_app.command("list")
@handles_errors
@targeted
def webhooks_list(as_json: JsonOpt = False, *, target: Target) -> None:
    """A tenant's webhooks."""
    with target.doors() as ml:
        rows = ml.webhooks.list().items
    emit(rows, ("id", "url", "event_types", "active"), as_json, "Webhooks")


@webhooks_app.command("delete")
@handles_errors
@targeted
def webhooks_delete(webhook_id: str, as_json: JsonOpt = False, *, target: Target) -> None:
    """Remove a webhook (its undelivered events are cancelled)."""
    with target.doors() as ml:
        ml.webhooks.delete(webhook_id)
    if as_json:
        typer.echo(json.dumps({"deleted": webhook_id}))


@webhooks_app.command("deliveries")
@handles_errors
@targeted
def webhooks_deliveries(
    webhook_id: str, state: str | None = None, as_json: JsonOpt = False, *, target: Target
) -> None:
    """A webhook's deliveries: state, attempts, last error."""
    with target.doors() as ml:
        items = ml.webhooks.deliveries(webhook_id, state=state).items  # type: ignore[arg-type]
    emit(
        items, ("sequence", "event_type", "state", "attempts", "last_error"), as_json, "Deliveries"
    )
