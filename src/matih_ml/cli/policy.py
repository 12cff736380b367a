"""``matih-ml policy``: promotion policies, per tenant and per model."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, handles_errors
from matih_ml.cli.target import Target, targeted
from matih_ml.errors import ValidationError

policy_app = typer.Typer(help="Promotion policies (per tenant, per model).", no_args_is_help=True)

ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="A model's override instead of the tenant's.")
]


def _echo(source: str, policy: dict) -> None:
    typer.echo(json.dumps({"source": source, "policy": policy}, indent=2))


@policy_app.command("show")
@handles_errors
@targeted
def policy_show(model: ModelOpt = None, as_json: JsonOpt = False, *, target: Target) -> None:
    """Show the policy in force (for a model: its override, else the tenant's)."""
    with target.doors() as ml:
        found = ml.policy.get(model)
    _echo(found.source, found.policy.model_dump(mode="json"))


@policy_app.command("set")
@handles_errors
@targeted
def policy_set(
    file: Annotated[typer.FileText, typer.Option("--file", "-f", help="The policy as JSON.")],
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Set the tenant's policy, or a model's override, from a JSON file ('-' for stdin)."""
    from pydantic import ValidationError as PydanticError

    from matih_ml.contracts.policy import Policy

    try:
        policy = Policy.model_validate_json(file.read())
    except PydanticError as exc:
        raise ValidationError(f"The policy is not valid: {exc}") from None
    with target.doors() as ml:
        stored = ml.policy.set(policy, model)
    _echo(stored.source, stored.policy.model_dump(mode="json"))
