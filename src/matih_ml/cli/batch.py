"""``matih-ml batch``: submit batch-scoring jobs, watch their progress, cancel them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from matih_ml.cli.output import JsonOpt, emit, handles_errors, plain
from matih_ml.cli.output import stderr as err
from matih_ml.cli.target import Target, targeted
from matih_ml.contracts.names import JOB_DONE
from matih_ml.errors import ValidationError

if TYPE_CHECKING:
    from matih_ml.client import MatihClient
    from matih_ml.contracts.schemas import BatchJobRead
    from matih_ml.local import LocalClient

batch_app = typer.Typer(help="Batch-scoring jobs on Ray Data.", no_args_is_help=True)

JobArg = Annotated[str, typer.Argument(help="The job id (job_...).")]
_COLUMNS = ("job_id", "name", "model_name", "version", "status", "progress", "reason")
_LIST_COLUMNS = ("job_id", "name", "model_name", "version", "status", "created_at")


def _emit_job(job: Any, as_json: bool) -> None:
    emit(job, _COLUMNS, as_json, f"Batch job {job.job_id}")


def _watch(
    ml: MatihClient | LocalClient, job_id: str, *, quiet: bool, poll: float = 0.5
) -> BatchJobRead:
    """Show a bar of rows scored of total on stderr, and the log under it, until the job
    ends; return it."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task(job_id, total=None)
        after = 0
        while True:
            job = ml.batch.get(job_id)  # read before the log: no line of its end is missed
            page = ml.batch.logs(job_id, after=after)
            after = page.next_after
            if not quiet:
                for line in page.items:
                    bar.console.print(f"{line.at:%H:%M:%S} {line.line}", highlight=False)
            done = job.progress.rows_done if job.progress else 0
            total = job.progress.rows_total if job.progress else None
            bar.update(task, completed=done, total=total, description=f"{job_id} {job.status}")
            if job.status in JOB_DONE and not page.items:
                return job
            if not page.items:
                time.sleep(poll)


@batch_app.command("submit")
@handles_errors
@targeted
def batch_submit(
    file: Annotated[Path, typer.Option("--file", "-f", help="The job as JSON.")],
    wait: Annotated[bool, typer.Option("--wait", help="Show its progress until it ends.")] = False,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Queue a batch-scoring job. A running `matih-ml serve` (or `jobs work`) runs it."""
    try:
        body = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"--file {str(file)!r}: {exc}") from None
    with target.doors() as ml:
        job = ml.batch.submit(body)
        if wait:
            job = _watch(ml, job.job_id, quiet=as_json)
    _emit_job(job, as_json)
    if wait and job.status != "succeeded":
        raise typer.Exit(1)


@batch_app.command("status")
@handles_errors
@targeted
def batch_status(job_id: JobArg, as_json: JsonOpt = False, *, target: Target) -> None:
    """A batch job's status, progress and version (with --json, its result too)."""
    with target.doors() as ml:
        _emit_job(ml.batch.get(job_id), as_json)


@batch_app.command("list")
@handles_errors
@targeted
def batch_list(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """A tenant's batch jobs, newest first."""
    with target.doors() as ml:
        # A status the contract does not name is refused by either door (a 422).
        jobs = ml.batch.list(status=status, limit=limit).items  # type: ignore[arg-type]
    emit(jobs, _LIST_COLUMNS, as_json, "Batch jobs")


@batch_app.command("cancel")
@handles_errors
@targeted
def batch_cancel(job_id: JobArg, as_json: JsonOpt = False, *, target: Target) -> None:
    """Cancel a queued batch job, or ask a running one to stop (it leaves no output)."""
    with target.doors() as ml:
        _emit_job(ml.batch.cancel(job_id), as_json)


@batch_app.command("logs")
@handles_errors
@targeted
def batch_logs(
    job_id: JobArg,
    follow: Annotated[bool, typer.Option("--follow", help="Until the job ends.")] = False,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """A batch job's log lines."""
    with target.doors() as ml:
        if follow and not as_json:  # each line as it comes
            for line in ml.batch.follow(job_id, poll=0.5):
                typer.echo(f"{line.at:%Y-%m-%d %H:%M:%S} {line.line}")
            return
        lines = list(ml.batch.follow(job_id, poll=0.5)) if follow else ml.batch.logs(job_id).items
    if as_json:
        typer.echo(json.dumps(plain(lines), default=str))
        return
    for line in lines:
        typer.echo(f"{line.at:%Y-%m-%d %H:%M:%S} {line.line}")
