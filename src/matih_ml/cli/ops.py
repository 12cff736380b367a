"""Operators' commands: ``matih-ml db upgrade|status`` and ``matih-ml gc``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from matih_ml.cli.output import JsonOpt, emit, handles_errors, load_services, stderr
from matih_ml.errors import ValidationError

db_app = typer.Typer(help="Schema migrations (MLflow's tables and the service's).")


def _settings_and_db():  # noqa: ANN202 - both types are imported lazily
    from matih_ml.config import Settings
    from matih_ml.store.db import Database

    settings = Settings()
    settings.ensure_local_dirs()
    return settings, Database(settings.database_url)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply every pending migration; safe to run again, and from several replicas."""
    from matih_ml.store import migrate

    settings, db = _settings_and_db()
    try:
        with stderr.status("Migrating..."):
            states = migrate.upgrade(settings, db)
    finally:
        db.dispose()
    emit(states, ("store", "url", "current", "head"), as_json, "Schema after upgrade")


@db_app.command("status")
@handles_errors
def db_status(as_json: JsonOpt = False) -> None:
    """Show each store's schema revision and the one this release needs.

    Exits 1 if a migration is pending.
    """
    from matih_ml.store import migrate

    settings, db = _settings_and_db()
    try:
        states = migrate.schema_states(settings, db)
    finally:
        db.dispose()
    rows = [{**s.__dict__, "up_to_date": s.up_to_date} for s in states]
    emit(rows, ("store", "url", "current", "head", "up_to_date"), as_json, "Schema")
    if not all(s.up_to_date for s in states):
        raise typer.Exit(1)


@handles_errors
def gc(
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", "-t", help="Only this tenant (repeatable).")
    ] = None,
    older_than: Annotated[
        float | None,
        typer.Option(
            help="Spare anything younger than this many seconds (another replica may be "
            "writing it). Default: MATIH_REGISTRATION_GRACE_S."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (what gc would remove, what it keeps and why); change nothing.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove half-registered versions, orphaned registration runs and orphaned files.

    The dry run and the real run make the same plan; the real run then carries it out.
    """
    if older_than is not None and older_than < 0:
        raise ValidationError("--older-than must be 0 seconds or more.")
    services = load_services()
    grace = services.settings.registration_grace_s if older_than is None else older_than
    ids = tenant or [t.tenant_id for t in services.tenants.list_tenants()]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=stderr,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("Scanning tenants", total=len(ids))

        def step(tenant_id: str) -> None:
            progress.update(task, description=f"Scanning {tenant_id}", advance=1)

        report = services.cleanup.collect(
            tenant_ids=ids, older_than_s=grace, dry_run=dry_run, progress=step
        )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    # Both lists, always: a dry run that showed only removals could not tell an
    # operator why a leftover they can see is still there after the real run.
    verb, kept = ("Would remove", "Would keep") if dry_run else ("Removed", "Kept")
    typer.echo(f"{verb} {len(report.removed)} item(s) (grace period {report.grace_s:g} s):")
    for item in report.removed:
        typer.echo(f"  - {item.tenant_id}: {item.what}: {item.reason}")
    typer.echo(f"{kept} {len(report.kept)} item(s):")
    for item in report.kept:
        typer.echo(f"  - {item.tenant_id}: {item.what}: {item.reason}")
