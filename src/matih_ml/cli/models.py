"""``matih-ml models``: list, show, register and promote a tenant's models."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from matih_ml.cli.output import (
    JsonOpt,
    TenantOpt,
    emit,
    handles_errors,
    load_services,
    plain,
    stderr,
)

models_app = typer.Typer(help="Registered models.", no_args_is_help=True)

_MODEL_COLS = ("name", "current_version", "stage", "framework", "versions", "metrics")


@models_app.command("list")
@handles_errors
def models_list(
    tenant: TenantOpt,
    stage: Annotated[str | None, typer.Option(help="Only models with a version here.")] = None,
    framework: Annotated[str | None, typer.Option(help="sklearn, pytorch or onnx.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a tenant's models."""
    emit(
        load_services().registry.list_models(tenant, stage, framework),
        _MODEL_COLS,
        as_json,
        f"Models of {tenant}",
    )


@models_app.command("show")
@handles_errors
def models_show(tenant: TenantOpt, model_id: str, as_json: JsonOpt = False) -> None:
    """Show one model."""
    services = load_services()
    md = services.registry.require_model(tenant, model_id)
    if as_json:
        versions = services.registry.list_versions(tenant, model_id)
        typer.echo(json.dumps({**plain(md), "version_details": plain(versions)}, indent=2))
        return
    emit(md, (*_MODEL_COLS, "artifact_uri"), False, f"Model {model_id}")
    emit(
        services.registry.list_versions(tenant, model_id),
        ("version", "stage", "framework", "run_id", "aliases"),
        False,
        "Versions",
    )


@models_app.command("register")
@handles_errors
def models_register(
    tenant: TenantOpt,
    name: Annotated[str, typer.Option(help="The model's name.")],
    run_id: Annotated[str, typer.Option("--run-id", help="The run that logged the model.")],
    artifact_path: Annotated[str, typer.Option(help="The model's path in the run.")] = "model",
    stage: Annotated[str | None, typer.Option(help="Move the new version to this stage.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a run's model (safe to re-run: the same run gives the same version)."""
    services = load_services()
    with stderr.status(f"Registering {name} from run {run_id}..."):
        v = services.lifecycle.register_from_run(
            tenant, name, run_id, artifact_path=artifact_path, created_by="cli"
        )
        if stage:
            services.lifecycle.land(tenant, name, v.version, stage, actor="cli")
            v = services.registry.get_version(tenant, name, v.version)
    emit(v, ("model_id", "version", "stage", "run_id", "artifact_uri"), as_json, "Registered")


@models_app.command("promote")
@handles_errors
def models_promote(
    tenant: TenantOpt,
    model_id: str,
    version: str,
    stage: Annotated[str, typer.Option(help="The target stage.")],
    reason: Annotated[str, typer.Option(help="Why (required with --force).")] = "",
    force: Annotated[bool, typer.Option(help="Skip the gates (operators only).")] = False,
    actor: Annotated[str, typer.Option(help="Who, for the history.")] = "cli",
    as_json: JsonOpt = False,
) -> None:
    """Move a version to another stage, through the gates."""
    result = load_services().lifecycle.transition_stage(
        tenant, model_id, version, stage, actor=actor, reason=reason, force=force
    )
    emit(result.model, _MODEL_COLS, as_json, f"Model {model_id}")
