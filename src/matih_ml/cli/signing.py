"""``matih-ml signing-keys``: an operator's command, on the server's own stores: each
tenant's model-signing keys, and their rotation (docs/provenance.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, emit, handles_errors, load_services
from matih_ml.tenancy import validate_tenant_id

signing_app = typer.Typer(help="Each tenant's model-signing keys.", no_args_is_help=True)

_COLS = ("key_id", "source", "active", "created_at", "retired_at")
TenantArg = Annotated[str, typer.Argument(help="The tenant.")]


@signing_app.command("list")
@handles_errors
def signing_keys_list(tenant_id: TenantArg, as_json: JsonOpt = False) -> None:
    """List a tenant's signing keys, retired ones too (their signatures still verify)."""
    keys = load_services().provenance.keys.list(validate_tenant_id(tenant_id))
    emit(keys, _COLS, as_json, f"Signing keys of {tenant_id}")


@signing_app.command("rotate")
@handles_errors
def signing_keys_rotate(tenant_id: TenantArg, as_json: JsonOpt = False) -> None:
    """Retire a tenant's signing key and make a new one; new versions are signed with it."""
    key = load_services().provenance.keys.rotate(validate_tenant_id(tenant_id))
    emit(key, _COLS, as_json, "New signing key")
