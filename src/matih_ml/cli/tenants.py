"""``matih-ml tenants``: an operator's command, on the server's own stores."""

from __future__ import annotations

from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, emit, handles_errors, load_services

tenants_app = typer.Typer(help="Create, list and delete tenants.", no_args_is_help=True)


@tenants_app.command("create")
@handles_errors
def tenants_create(
    tenant_id: Annotated[str, typer.Argument(help="DNS-safe name, 2-63 characters.")],
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant."""
    t = load_services().tenants.create_tenant(tenant_id, description or None)
    emit(t, ("tenant_id", "description", "artifact_root"), as_json, "Tenant created")


@tenants_app.command("list")
@handles_errors
def tenants_list(as_json: JsonOpt = False) -> None:
    """List tenants."""
    emit(
        load_services().tenants.list_tenants(),
        ("tenant_id", "description", "artifact_root"),
        as_json,
        "Tenants",
    )


@tenants_app.command("delete")
@handles_errors
def tenants_delete(tenant_id: str, as_json: JsonOpt = False) -> None:
    """Delete an empty tenant."""
    load_services().tenants.delete_tenant(tenant_id)
    emit(
        {"tenant_id": tenant_id, "deleted": True},
        ("tenant_id", "deleted"),
        as_json,
        "Tenant deleted",
    )
