"""``matih-ml keys``: an operator's command, on the server's own stores (``create``
goes through the tenant's admin door, ``matih_ml.local``, as an operator)."""

from __future__ import annotations

import json
from typing import Annotated, cast

import typer

from matih_ml.cli.output import JsonOpt, TenantOpt, emit, handles_errors, load_services, plain
from matih_ml.contracts.names import RoleName
from matih_ml.local import LocalClient

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
    # The tenant's admin door, as an operator: the same rules as POST /api/v1/keys (the
    # operator is recorded as the creator). The store checks the role's name.
    with LocalClient.operator(load_services(), tenant) as ml:
        new = ml.keys.create(cast(RoleName, role), name=name, owner=owner)
    if as_json:
        # Python values through plain(), not the model's JSON mode: times keep the
        # "+00:00" this command has always printed.
        typer.echo(json.dumps(plain(new.model_dump()), indent=2))
        return
    # Plain lines, not a table: rich wraps or cuts a cell to the terminal's width, and
    # the key must come out whole, on a line of its own, to be copied.
    for label, value in (
        ("key_id", new.key_id),
        ("tenant", new.tenant_id),
        ("name", new.name),
        ("owner", new.owner),
        ("role", new.role),
    ):
        typer.echo(f"{label + ':':8}{value}")
    typer.echo("The key, shown this once:")
    typer.echo(new.key)


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
