"""Operators' commands that run the service: ``serve``, ``serve-models``, ``dispatcher``
and ``demo``."""

from __future__ import annotations

import contextlib
import json
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from matih_ml.cli.output import JsonOpt, emit, handles_errors, load_services, stderr
from matih_ml.errors import MatihError

if TYPE_CHECKING:
    from matih_ml.config import Settings
    from matih_ml.services import Services


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
    from matih_ml.api.http_protocol import CoalescingHttpToolsProtocol
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
            http=CoalescingHttpToolsProtocol,
        )
        return
    uvicorn.run(
        create_app(services=services),
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        # An answer's header and body in one write (api/http_protocol.py).
        http=CoalescingHttpToolsProtocol,
    )


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
        from matih_ml.deploy import ray_app
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


@handles_errors
def dispatcher() -> None:
    """Deliver events on its own (when replicas run with MATIH_DISPATCHER=0). Any
    number may run; stop it with Ctrl-C or SIGTERM."""
    services = load_services()
    d = services.dispatcher
    signal.signal(signal.SIGTERM, lambda *_: d.stop())
    stderr.print("Dispatching events; Ctrl-C to stop.")
    with contextlib.suppress(KeyboardInterrupt):
        d.run_forever()
