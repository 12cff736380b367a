"""The ``matih-ml`` command line, one module per command group. Every command prints a
table, or JSON with ``--json``.

Tenant-facing groups (``models``, ``runs``, ``policy``, ``approvals``, ``events``,
``webhooks``, ``jobs``, ``batch``) call a server with a URL and a key (:mod:`.target`); operator
commands (``serve``, ``db``, ``gc``, ``tenants``, ``keys``, ``signing-keys``, ``dispatcher``,
``jobs work``, ``events replay``) work on the server's own stores.
"""

from __future__ import annotations

import typer

from matih_ml.cli.approvals import approvals_app
from matih_ml.cli.batch import batch_app
from matih_ml.cli.events import events_app
from matih_ml.cli.jobs import jobs_app
from matih_ml.cli.keys import keys_app
from matih_ml.cli.models import models_app
from matih_ml.cli.ops import db_app, gc
from matih_ml.cli.policy import policy_app
from matih_ml.cli.runs import runs_app
from matih_ml.cli.server import demo, dispatcher, serve, serve_models
from matih_ml.cli.signing import signing_app
from matih_ml.cli.tenants import tenants_app
from matih_ml.cli.webhooks import webhooks_app

app = typer.Typer(
    help="MATIH ML Service: multi-tenant experiment tracking and model registry.",
    no_args_is_help=True,
)
app.command("serve")(serve)
app.command("serve-models")(serve_models)
app.command("demo")(demo)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(signing_app, name="signing-keys")
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")
app.add_typer(policy_app, name="policy")
app.add_typer(approvals_app, name="approvals")
app.add_typer(db_app, name="db")
app.command("gc")(gc)
app.add_typer(events_app, name="events")
app.add_typer(webhooks_app, name="webhooks")
app.command("dispatcher")(dispatcher)
app.add_typer(jobs_app, name="jobs")
app.add_typer(batch_app, name="batch")


@app.callback()
def main() -> None:
    """MATIH ML Service."""


__all__ = ["app"]
