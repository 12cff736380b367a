"""The executor: claims queued jobs, runs them, and keeps their rows honest.

Any replica with ``MATIH_TRAINING_WORKERS`` > 0 runs one. Jobs are claimed from the
database, so replicas share the queue and a job runs once. A heartbeat thread marks this
executor's jobs alive, passes cancel requests to them, and fails the jobs of executors
that died (no heartbeat for ``MATIH_TRAINING_STALE_S``), ending their runs as FAILED.

Training jobs run here (:func:`~matih_ml.training.runner.run_job`); a job of another kind
runs with the :data:`JobRunner` the composition root hands in for it (batch inference's
lives in ``matih_ml.batch``, a layer above training, so it is never imported here). An
executor claims only the kinds it has a runner for.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from matih_ml.errors import MatihError
from matih_ml.training.collaborators import TrainingServices
from matih_ml.training.context import JobCancelled, JobContext
from matih_ml.training.jobs import Job, JobService
from matih_ml.training.runner import JobResult, run_job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    """How a job of another kind than training ended (its runner's answer).

    Attributes:
        status: ``succeeded`` or ``failed``.
        outcome: The job's outcome (``succeeded``, ``failed``...).
        reason: One line saying what happened, for a person.
        result: The job's figures (JSON).
    """

    status: str
    outcome: str
    reason: str
    result: dict[str, Any] | None = None


# Runs one claimed job of a kind: logs through the context, raises JobCancelled when the
# context says so (having cleaned up), a MatihError for a failure to report as it is.
JobRunner = Callable[[Job, JobContext], Finished]


def _result(result: JobResult) -> dict[str, Any]:
    # Tune samples numpy scalars: stored as JSON, they become plain numbers.
    def plain(value: Any) -> Any:
        return value.item() if hasattr(value, "item") else str(value)

    return json.loads(json.dumps(asdict(result), default=plain))


class JobExecutor:
    """Runs jobs in background threads of this process.

    Args:
        services: The service layer (``services.jobs`` holds the queue).
        workers: Jobs run at once by this executor.
        poll_s: How often an idle worker looks for queued jobs (a submit in this
            process wakes it at once).
        heartbeat_s: How often running jobs are marked alive and cancels are read.
        runners: The runner of each kind beside training (``{"batch": ...}``); the
            services' ``job_runners`` when not given.
    """

    def __init__(
        self,
        services: TrainingServices,
        *,
        workers: int | None = None,
        poll_s: float = 1.0,
        heartbeat_s: float = 1.0,
        runners: Mapping[str, JobRunner] | None = None,
    ) -> None:
        self._services = services
        self._jobs: JobService = services.jobs
        self._runners = dict(services.job_runners if runners is None else runners)
        self._runners.pop("training", None)  # training jobs run here, as always
        self.kinds = ("training", *sorted(self._runners))
        self._workers = services.settings.training_workers if workers is None else workers
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._running: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._unsubscribe = lambda: None

    def start(self) -> None:
        """Start the worker threads and the heartbeat (no-op with 0 workers)."""
        if self._threads or self._workers < 1:
            return
        self._stop.clear()
        self._unsubscribe = self._jobs.on_submit(self.wake)
        for i in range(self._workers):
            t = threading.Thread(target=self._work, name=f"matih-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        beat = threading.Thread(target=self._beat, name="matih-job-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel running jobs and wait for the threads (a job still running after
        ``timeout`` is left to be failed as stale by another executor)."""
        self._stop.set()
        self._unsubscribe()
        self._unsubscribe = lambda: None
        with self._lock:
            for event in self._running.values():
                event.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def wake(self) -> None:
        """Look for queued jobs now."""
        with self._wake:
            self._wake.notify_all()

    def running(self) -> list[str]:
        """The jobs this executor is running."""
        with self._lock:
            return list(self._running)

    # ------------------------------------------------------------------ threads

    def _work(self) -> None:
        try:
            self._loop()
        finally:
            from matih_ml.training import ray_session

            if ray_session.started_ray_here():  # its local Ray must stop before this thread
                ray_session.shutdown_ray()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._jobs.claim(self.worker_id, kinds=self.kinds)
            except Exception:  # the database is down: try again later
                log.exception("cannot claim a job")
                job = None
            if job is None:
                with self._wake:
                    self._wake.wait(self._poll_s)
                continue
            try:
                self._run(job)
            except Exception:  # recording the end failed (database down): stale later
                log.exception("%s job %s: cannot record its end", job.kind, job.job_id)

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            try:
                for job_id in self._jobs.heartbeat(self.worker_id, self.running()):
                    with self._lock:
                        event = self._running.get(job_id)
                    if event is not None:
                        event.set()
                for job in self._jobs.fail_stale(self._services.settings.training_stale_s):
                    self._end_orphan_run(job)
            except Exception:
                log.exception("training job heartbeat failed")

    def _end_orphan_run(self, job: Job) -> None:
        if job.kind != "training":
            cleanup = self._services.job_cleanups.get(job.kind)
            if cleanup is not None:
                try:
                    cleanup(job)
                except Exception:  # noqa: BLE001 - garbage left is logged, never fatal
                    log.warning("cannot clean up after %s job %s", job.kind, job.job_id)
            return
        if not job.parent_run_id:
            return
        outcome = {"status": "failed", "reason": job.reason or "interrupted"}
        try:
            self._services.runs.end_run(
                job.tenant_id,
                job.parent_run_id,
                "FAILED",
                job={"job_id": job.job_id, "outcome": outcome},
            )
        except MatihError as exc:
            log.warning("cannot end the run of interrupted job %s: %s", job.job_id, exc.message)

    # -------------------------------------------------------------------- a job

    def _run(self, job: Job) -> None:
        cancel = threading.Event()
        with self._lock:
            self._running[job.job_id] = cancel
        ctx = JobContext(
            job_id=job.job_id,
            emit=lambda line: self._jobs.append_log(job.job_id, [line]),
            cancelled=cancel.is_set,
            on_parent_run=lambda run_id: self._jobs.set_parent_run(job.job_id, run_id),
        )
        try:
            if job.kind != "training":
                ended = self._runners[job.kind](job, ctx)
                self._jobs.finish(
                    job.job_id,
                    ended.status,
                    outcome=ended.outcome,
                    reason=ended.reason,
                    result=ended.result,
                )
                return
            result = self._train(job, ctx)
        except JobCancelled:
            self._jobs.finish(
                job.job_id, "cancelled", outcome="cancelled", reason="cancelled while running"
            )
        except MatihError as exc:
            self._jobs.finish(job.job_id, "failed", outcome="failed", reason=exc.message)
        except Exception as exc:
            log.exception("%s job %s failed", job.kind, job.job_id)
            reason = f"{type(exc).__name__}: {exc}"
            self._jobs.finish(job.job_id, "failed", outcome="failed", reason=reason)
        else:
            status = "failed" if result.status == "failed" else "succeeded"
            self._jobs.finish(
                job.job_id,
                status,
                outcome=result.status,
                reason=result.reason,
                result=_result(result),
            )
        finally:
            with self._lock:
                self._running.pop(job.job_id, None)

    def _train(self, job: Job, ctx: JobContext) -> JobResult:
        settings = self._services.settings
        # Validated again: the operator may have withdrawn an entry point since.
        spec = self._jobs.validate(job.spec)
        return run_job(
            self._services,
            job.tenant_id,
            spec,
            data_root=settings.tenant_data_root(job.tenant_id),
            actor=job.created_by,
            ray_address=settings.ray_address,
            context=ctx,
        )
