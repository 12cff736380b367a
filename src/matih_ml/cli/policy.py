"""``matih-ml policy``: promotion policies, per tenant and per model."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, TenantOpt, handles_errors, load_services
from matih_ml.registry.policy import Policy

policy_app = typer.Typer(help="Promotion policies (per tenant, per model).", no_args_is_help=True)

ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="A model's override instead of the tenant's.")
]


@policy_app.command("show")
@handles_errors
def policy_show(tenant: TenantOpt, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Show the policy in force (for a model: its override, else the tenant's)."""
    services = load_services()
    services.tenants.ensure(tenant, create=False)
    if model:
        services.registry.require_model(tenant, model)
        policy, source = services.lifecycle.policies.effective(tenant, model)
    else:
        found = services.lifecycle.policies.get(tenant)
        policy, source = (found, "tenant") if found else (Policy(), "default")
    typer.echo(json.dumps({"source": source, "policy": policy.model_dump()}, indent=2))


@policy_app.command("set")
@handles_errors
def policy_set(
    tenant: TenantOpt,
    file: Annotated[typer.FileText, typer.Option("--file", "-f", help="The policy as JSON.")],
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the tenant's policy, or a model's override, from a JSON file ('-' for stdin)."""
    from pydantic import ValidationError as PydanticError

    from matih_ml.errors import ValidationError

    try:
        policy = Policy.model_validate_json(file.read())
    except PydanticError as exc:
        raise ValidationError(f"The policy is not valid: {exc}") from None
    services = load_services()
    services.tenants.ensure(tenant, create=False)
    if model:
        services.registry.require_model(tenant, model)
    services.lifecycle.policies.set(tenant, policy, model or "", actor="cli")
    source = "model" if model else "tenant"
    typer.echo(json.dumps({"source": source, "policy": policy.model_dump()}, indent=2))
