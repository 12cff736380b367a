"""``matih-ml keys``: an operator's command, on the server's own stores."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, TenantOpt, emit, handles_errors, load_services, plain

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@keys_app.command("create")
@handles_errors
def keys_create(
    tenant: TenantOpt,
    role: Annotated[str, typer.Option(help="viewer, editor, approver or admin.")],
    name: Annotated[
        str,
        typer.Option(help="A label, unique in the tenant. Default: <role>-key-<8 hex>."),
    ] = "",
    owner: Annotated[
        str,
        typer.Option(
            help="The person or service account the key belongs to; four eyes compares "
            "owners. Default: the key's name (a person of its own)."
        ),
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the key is printed this once."""
    services = load_services()
    services.tenants.ensure(tenant, create=False)
    new = services.api_keys.create(tenant, role, name, created_by="cli", owner=owner)
    if as_json:
        typer.echo(json.dumps(plain({**asdict(new.info), "key": new.secret}), indent=2))
        return
    # Plain lines, not a table: rich wraps or cuts a cell to the terminal's width, and
    # the key must come out whole, on a line of its own, to be copied.
    info = new.info
    for label, value in (
        ("key_id", info.key_id),
        ("tenant", info.tenant_id),
        ("name", info.name),
        ("owner", info.owner),
        ("role", info.role),
    ):
        typer.echo(f"{label + ':':8}{value}")
    typer.echo("The key, shown this once:")
    typer.echo(new.secret)


@keys_app.command("list")
@handles_errors
def keys_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """List a tenant's API keys."""
    emit(
        load_services().api_keys.list(tenant),
        ("key_id", "name", "owner", "role", "created_at", "revoked_at"),
        as_json,
        f"Keys of {tenant}",
    )


@keys_app.command("revoke")
@handles_errors
def keys_revoke(tenant: TenantOpt, key_id: str, as_json: JsonOpt = False) -> None:
    """Revoke an API key."""
    info = load_services().api_keys.revoke(tenant, key_id)
    emit(info, ("key_id", "name", "role", "revoked_at"), as_json, "Key revoked")
