"""The ``matih-ml`` command line."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="MATIH ML Service: multi-tenant experiment tracking and model registry.",
    no_args_is_help=True,
)
console = Console()
# Progress goes to stderr so that --json output on stdout stays parseable.
progress = Console(stderr=True)


@app.callback()
def main() -> None:
    """MATIH ML Service."""


@app.command()
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Train and register a model for two tenants, and show what each tenant sees."""
    from matih_ml.demo import run_demo

    with progress.status("Training and registering for two tenants..."):
        seen = run_demo()
    if as_json:
        typer.echo(json.dumps(seen, indent=2))
        return
    for tenant, view in seen.items():
        table = Table(title=f"What tenant '{tenant}' sees")
        for col in ("model", "versions", "stage", "accuracy", "artifacts"):
            table.add_column(col)
        for m in view["models"]:
            table.add_row(
                m["name"],
                ",".join(m["versions"]),
                m["stage"],
                f"{m['accuracy']:.3f}",
                m["artifact_uri"],
            )
        console.print(table)


if __name__ == "__main__":
    app()
