"""``matih-ml runs``: list and compare a tenant's runs."""

from __future__ import annotations

from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, emit, handles_errors
from matih_ml.cli.target import Target, targeted

runs_app = typer.Typer(help="Runs.", no_args_is_help=True)


@runs_app.command("list")
@handles_errors
@targeted
def runs_list(
    experiment_id: Annotated[str, typer.Option("--experiment", "-e", help="Experiment id.")],
    max_results: Annotated[int, typer.Option(help="How many.")] = 100,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """List an experiment's runs, newest first."""
    with target.doors() as ml:
        found = ml.experiments.list_runs(experiment_id, max_results=max_results).items
    rows = [
        {"run_id": r.run_id, "run_name": r.run_name, "status": r.status, "metrics": r.metrics}
        for r in found
    ]
    emit(rows, ("run_id", "run_name", "status", "metrics"), as_json, "Runs")


@runs_app.command("compare")
@handles_errors
@targeted
def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids.")],
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="Metric keys.")] = [],  # noqa: B006
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Compare runs side by side."""
    with target.doors() as ml:
        rows = ml.experiments.compare(run_ids, metrics=metric)
    emit(rows, ("run_id", "run_name", "status", "parameters", "metrics"), as_json, "Comparison")
