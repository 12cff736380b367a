"""``matih-ml jobs``: submit training jobs, follow them, cancel them, run an executor."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from matih_ml.cli.output import JsonOpt, emit, handles_errors, load_services, plain
from matih_ml.cli.output import stderr as err
from matih_ml.cli.target import Target, targeted
from matih_ml.errors import ValidationError

if TYPE_CHECKING:
    from matih_ml.client import MatihClient
    from matih_ml.services import Services
    from matih_ml.training.jobs import Job

jobs_app = typer.Typer(help="Training jobs on Ray.", no_args_is_help=True)

JobArg = Annotated[str, typer.Argument(help="The job id (job_...).")]
_COLUMNS = ("job_id", "name", "model_name", "status", "outcome", "reason", "created_at")
_DONE = ("succeeded", "failed", "cancelled")


def _emit_job(job: Any, as_json: bool) -> None:
    emit(job, _COLUMNS, as_json, f"Training job {job.job_id}")


def _follow(services: Services, tenant: str, job_id: str, *, quiet: bool) -> Job:
    """Print the job's log lines until it ends; return it."""
    after = 0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task(job_id, total=None)
        while True:
            job = services.jobs.get(tenant, job_id)
            for line in services.jobs.logs(tenant, job_id, after=after):
                after = line.seq
                if not quiet:
                    progress.console.print(f"{line.at:%H:%M:%S} {line.line}", highlight=False)
            progress.update(task, description=f"{job_id} {job.status}")
            if job.status in _DONE:
                return job
            time.sleep(0.5)


def _follow_remote(ml: MatihClient, job_id: str, *, quiet: bool) -> Any:
    """As :func:`_follow`, through the server."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task(job_id, total=None)
        for line in ml.jobs.follow(job_id, poll=0.5):
            if not quiet:
                progress.console.print(f"{line.at:%H:%M:%S} {line.line}", highlight=False)
            progress.update(task, description=f"{job_id} running")
    return ml.jobs.get(job_id)


@jobs_app.command("submit")
@handles_errors
@targeted
def jobs_submit(
    file: Annotated[Path, typer.Option("--file", "-f", help="The job as JSON.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow its log until it ends.")] = False,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Queue a training job. A running `matih-ml serve` (or `jobs work`) runs it."""
    try:
        body = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"--file {str(file)!r}: {exc}") from None
    if target.local:
        services, tenant = target.services()
        services.tenants.ensure(tenant, create=services.settings.auto_create_tenants)
        job: Any = services.jobs.submit(tenant, body, actor="cli")
        if wait:
            job = _follow(services, tenant, job.job_id, quiet=as_json)
    else:
        with target.client() as ml:
            job = ml.jobs.submit(body)
            if wait:
                job = _follow_remote(ml, job.job_id, quiet=as_json)
    _emit_job(job, as_json)
    if wait and job.status != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("status")
@handles_errors
@targeted
def jobs_status(job_id: JobArg, as_json: JsonOpt = False, *, target: Target) -> None:
    """A job's status, outcome and reason (with --json, its figures too)."""
    if target.local:
        services, tenant = target.services()
        _emit_job(services.jobs.get(tenant, job_id), as_json)
        return
    with target.client() as ml:
        _emit_job(ml.jobs.get(job_id), as_json)


@jobs_app.command("list")
@handles_errors
@targeted
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """A tenant's jobs, newest first."""
    if target.local:
        services, tenant = target.services()
        jobs: Any = services.jobs.list(tenant, status=status, limit=limit)
    else:
        with target.client() as ml:
            jobs = ml.jobs.list(status=status, limit=limit).items  # type: ignore[arg-type]
    emit(jobs, _COLUMNS, as_json, "Training jobs")


@jobs_app.command("cancel")
@handles_errors
@targeted
def jobs_cancel(job_id: JobArg, as_json: JsonOpt = False, *, target: Target) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    if target.local:
        services, tenant = target.services()
        _emit_job(services.jobs.cancel(tenant, job_id, actor="cli"), as_json)
        return
    with target.client() as ml:
        _emit_job(ml.jobs.cancel(job_id), as_json)


@jobs_app.command("logs")
@handles_errors
@targeted
def jobs_logs(
    job_id: JobArg,
    follow: Annotated[bool, typer.Option("--follow", help="Until the job ends.")] = False,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """A job's log lines."""
    if target.local:
        services, tenant = target.services()
        if follow and not as_json:
            _follow(services, tenant, job_id, quiet=False)
            return
        lines: Any = services.jobs.logs(tenant, job_id, limit=100_000)
    else:
        with target.client() as ml:
            if follow and not as_json:
                _follow_remote(ml, job_id, quiet=False)
                return
            lines = list(ml.jobs.follow(job_id)) if follow else ml.jobs.logs(job_id).items
    if as_json:
        typer.echo(json.dumps(plain(lines), default=str))
        return
    for line in lines:
        typer.echo(f"{line.at:%Y-%m-%d %H:%M:%S} {line.line}")


@jobs_app.command("work")
@handles_errors
def jobs_work(
    workers: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
) -> None:
    """Run queued jobs (of every tenant) without serving the API, until interrupted."""
    from matih_ml.training.executor import JobExecutor

    executor = JobExecutor(load_services(), workers=workers)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    executor.start()
    err.print(f"executor {executor.worker_id}: {workers} worker(s); Ctrl-C stops it")
    stop.wait()
    executor.stop()
