"""The ``matih-ml`` command line. Every command prints a table, or JSON with ``--json``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from matih_ml.cli_events import dispatcher, events_app, webhooks_app
from matih_ml.cli_jobs import jobs_app
from matih_ml.cli_ops import db_app, gc
from matih_ml.cli_output import (
    JsonOpt,
    TenantOpt,
    emit,
    handles_errors,
    load_services,
    plain,
    stderr,
)
from matih_ml.errors import MatihError
from matih_ml.registry.policy import Policy

if TYPE_CHECKING:
    from matih_ml.config import Settings
    from matih_ml.services import Services

app = typer.Typer(
    help="MATIH ML Service: multi-tenant experiment tracking and model registry.",
    no_args_is_help=True,
)
tenants_app = typer.Typer(help="Create, list and delete tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs.", no_args_is_help=True)
policy_app = typer.Typer(help="Promotion policies (per tenant, per model).", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")
app.command("gc")(gc)
app.add_typer(events_app, name="events")
app.add_typer(webhooks_app, name="webhooks")
app.command("dispatcher")(dispatcher)
app.add_typer(jobs_app, name="jobs")


@app.callback()
def main() -> None:
    """MATIH ML Service."""


# ------------------------------------------------------------------------ serve


@app.command()
@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request (off: a line per prediction costs ~0.1 ms; /metrics "
            "counts requests).",
        ),
    ] = False,
) -> None:
    """Start the REST API (on the embedded default unless MLFLOW_TRACKING_URI is set)."""
    import os

    import uvicorn

    # A service's log is not a terminal: MLflow's download progress bars (training jobs'
    # baselines, gate checks) would fill it. An operator's own value wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from matih_ml.api.app import create_app
    from matih_ml.bootstrap import bootstrap_demo

    services = load_services()
    settings = services.settings
    if settings.tracking_uri.startswith("http") and not settings.database_url_env:
        stderr.print(
            "[yellow]warning[/yellow]: MATIH_DATABASE_URL is not set, so API keys and stages "
            "live in a local SQLite file that other replicas do not share."
        )
    _recover(services)
    key = bootstrap_demo(services)
    if key:
        # Plain prints: the key must stay on one line to be copied.
        tenant = services.settings.bootstrap_tenant or "demo"
        typer.echo(f"Created tenant '{tenant}' and an admin key, shown this once:", err=True)
        typer.echo(f"  {key}", err=True)
        typer.echo(
            f"Try: curl -H 'Authorization: Bearer {key}' http://{host}:{port}/api/v1/models",
            err=True,
        )
    _announce_scrape_token(settings, f"http://{host}:{port}")
    if workers > 1:
        # Worker processes each build their own services from the same environment
        # (uvicorn forks them from an import string, not from an app object).
        uvicorn.run(
            "matih_ml.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=access_log,
        )
        return
    uvicorn.run(
        create_app(services=services),
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
    )


@app.command("serve-models")
@handles_errors
def serve_models(
    ray: Annotated[bool, typer.Option("--ray", help="Serve on Ray Serve (required).")] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    replicas: Annotated[int, typer.Option(min=1, help="Replicas of the API.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Serve the API and its models on Ray Serve (RAY_ADDRESS's cluster, else a local Ray)."""
    if not ray:
        stderr.print(
            "[red]error[/red]: --ray is required; `matih-ml serve` is the plain HTTP server."
        )
        raise typer.Exit(2)
    try:
        from matih_ml.serving import ray_app
    except ImportError as exc:
        from matih_ml.errors import UnavailableError

        raise UnavailableError(f"Ray Serve is missing ({exc}): install matih-ml[ray].") from None

    # Built once here: migrations run once rather than racing in every replica, and a bad
    # configuration fails now rather than after Ray's slow start.
    services = load_services()
    if not as_json:
        _announce_scrape_token(services.settings, f"http://{host}:{port}")
    with stderr.status("Starting Ray Serve..."):
        url = ray_app.run(host, port, replicas, blocking=False)
    ready = {"url": url, "ray_address": ray_app.ray_address()}
    if as_json:
        typer.echo(json.dumps(ready))
    else:
        stderr.print(f"Serving on {url} (Ray at {ready['ray_address']}); Ctrl-C stops it.")
    ray_app.serve_until_signalled()


def _announce_scrape_token(settings: Settings, base_url: str) -> None:
    """On the embedded default's first start, make the /metrics scrape token and print it.

    Printed once, like the bootstrap admin key: only its hash is kept.
    """
    from matih_ml.auth.scrape_token import ensure_scrape_token

    token = ensure_scrape_token(settings)
    if token:
        # Plain prints, like the admin key's: the token must stay on one line to be copied.
        typer.echo("Created the /metrics scrape token, shown this once:", err=True)
        typer.echo(f"  {token}", err=True)
        typer.echo(f"Scrape: curl -H 'Authorization: Bearer {token}' {base_url}/metrics", err=True)


def _recover(services: Services) -> None:
    """Remove what a killed process left half-done (older than the grace period)."""
    try:
        report = services.cleanup.collect(older_than_s=services.settings.registration_grace_s)
    except MatihError as exc:
        stderr.print(f"[yellow]start-up cleanup skipped[/yellow]: {exc.message}")
        return
    if report.total:
        stderr.print(
            f"Start-up cleanup removed {len(report.pending_versions)} half-registered "
            f"version(s), {len(report.orphan_runs)} orphaned run(s) and "
            f"{len(report.orphan_folders)} orphaned folder(s)."
        )


@app.command()
def demo(as_json: JsonOpt = False) -> None:
    """Train and register a model for two tenants, and show what each tenant sees."""
    from matih_ml.demo import run_demo

    with stderr.status("Training and registering for two tenants..."):
        seen = run_demo()
    if as_json:
        typer.echo(json.dumps(seen, indent=2))
        return
    for tenant, view in seen.items():
        emit(
            view["models"],
            ("name", "versions", "stage", "accuracy", "artifact_uri"),
            False,
            f"What tenant '{tenant}' sees",
        )


# ---------------------------------------------------------------------- tenants


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


# ------------------------------------------------------------------------- keys


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


# ----------------------------------------------------------------------- models

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


# ------------------------------------------------------------------------- runs


@runs_app.command("list")
@handles_errors
def runs_list(
    tenant: TenantOpt,
    experiment_id: Annotated[str, typer.Option("--experiment", "-e", help="Experiment id.")],
    max_results: Annotated[int, typer.Option(help="How many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List an experiment's runs, newest first."""
    page = load_services().runs.list_runs(tenant, experiment_id, max_results)
    rows = [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "metrics": dict(r.data.metrics),
        }
        for r in page.items
    ]
    emit(rows, ("run_id", "run_name", "status", "metrics"), as_json, "Runs")


@runs_app.command("compare")
@handles_errors
def runs_compare(
    tenant: TenantOpt,
    run_ids: Annotated[list[str], typer.Argument(help="Run ids.")],
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="Metric keys.")] = [],  # noqa: B006
    as_json: JsonOpt = False,
) -> None:
    """Compare runs side by side."""
    rows = load_services().registry.compare_runs(tenant, run_ids, metric)
    emit(rows, ("run_id", "run_name", "status", "parameters", "metrics"), as_json, "Comparison")


# ----------------------------------------------------------------------- policy

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


if __name__ == "__main__":
    app()
