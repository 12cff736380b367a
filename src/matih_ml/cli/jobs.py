"""``matih-ml jobs``: submit training jobs, follow them, cancel them, run an executor."""

from __future__ import annotations

import json
import signal
import threading
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
    from matih_ml.contracts.schemas import JobRead
    from matih_ml.local import LocalClient

jobs_app = typer.Typer(help="Training jobs on Ray.", no_args_is_help=True)

JobArg = Annotated[str, typer.Argument(help="The job id (job_...).")]
_COLUMNS = ("job_id", "name", "model_name", "status", "outcome", "reason", "created_at")


def _emit_job(job: Any, as_json: bool) -> None:
    emit(job, _COLUMNS, as_json, f"Training job {job.job_id}")


def _follow(ml: MatihClient | LocalClient, job_id: str, *, quiet: bool) -> JobRead:
    """Print the job's log lines until it ends; return it."""
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
    with target.doors() as ml:
        job = ml.jobs.submit(body)
        if wait:
            job = _follow(ml, job.job_id, quiet=as_json)
    _emit_job(job, as_json)
    if wait and job.status != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("status")
@handles_errors
@targeted
def jobs_status(job_id: JobArg, as_json: JsonOpt = False, *, target: Target) -> None:
    """A job's status, outcome and reason (with --json, its figures too)."""
    with target.doors() as ml:
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
    with target.doors() as ml:
        # A status the contract does not name is refused by either door (a 422).
        jobs = ml.jobs.list(status=status, limit=limit).items  # type: ignore[arg-type]
    emit(jobs, _COLUMNS, as_json, "Training jobs")


@jobs_app.command("cancel")
@handles_errors
@targeted
def jobs_cancel(job_id: JobArg, as_json: JsonOpt = False, *, target: Target) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    with target.doors() as ml:
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
    with target.doors() as ml:
        if follow and not as_json:
            _follow(ml, job_id, quiet=False)
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
