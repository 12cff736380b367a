"""``matih-ml runs``: list and compare a tenant's runs."""

from __future__ import annotations

from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, TenantOpt, emit, handles_errors, load_services

runs_app = typer.Typer(help="Runs.", no_args_is_help=True)


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
