"""The experiment tracker of the SDK: tenant-tagged runs with a fluent wrapper.

Usage (as in the specification)::

    tracker = get_experiment_tracker()
    with tracker.start_run("my-experiment", run_config=RunConfig(tenant_id="acme")) as run:
        run.log_params({"lr": 0.01}).log_metric("loss", 0.3, step=1)
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunStatus, RunTag

from matih_ml import validation, where
from matih_ml.backend import MlflowBackend, connect, use_as_mlflow_default
from matih_ml.config import Settings
from matih_ml.errors import ValidationError
from matih_ml.events import training
from matih_ml.events.outbox import EventLog
from matih_ml.mlflow_adapter.bulk import BulkMetricWriter, Point
from matih_ml.mlflow_errors import translated
from matih_ml.store import migrate
from matih_ml.store.db import Database
from matih_ml.tenancy import TenantDirectory, tenant_scope
from matih_ml.tracking.buffer import MetricBuffer
from matih_ml.tracking.experiments import get_or_create_experiment
from matih_ml.tracking.metrics import log_metrics
from matih_ml.tracking.remote import TOKEN_ENV, RemoteServer

TAG_TENANT = "matih.tenant_id"
TAG_USER = "matih.user_id"
TAG_JOB = "matih.job_id"


@dataclass(frozen=True)
class RunConfig:
    """Who and what a run belongs to.

    Attributes:
        run_name: A readable name for the run.
        tenant_id: The tenant; required.
        user_id: Who started it.
        job_id: The job (pipeline, schedule) that started it.
        tags: Extra tags for the run.
    """

    run_name: str | None = None
    tenant_id: str | None = None
    user_id: str | None = None
    job_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class ActiveRun:
    """A live run. Every method returns the run itself, so calls chain.

    Each call binds the run's tenant for its own duration, so a run may be
    handed to another thread and still write only into its tenant.
    """

    def __init__(self, backend: MlflowBackend, tenant_id: str, run: Run) -> None:
        self._backend = backend
        self._client = backend.client
        self._tenant_id = tenant_id
        self._run = run
        self._started = time.monotonic()
        self._writer = BulkMetricWriter(backend.client)
        self._buffer: MetricBuffer | None = None
        self._buffer_lock = threading.Lock()

    @property
    def run_id(self) -> str:
        """The MLflow run id."""
        return self._run.info.run_id

    @property
    def experiment_id(self) -> str:
        """The id of the experiment the run is in."""
        return self._run.info.experiment_id

    @property
    def artifact_uri(self) -> str:
        """Where the run's artifacts are stored (under the tenant's prefix)."""
        return self._run.info.artifact_uri

    @property
    def tenant_id(self) -> str:
        """The tenant the run belongs to."""
        return self._tenant_id

    def log_params(self, params: Mapping[str, Any]) -> ActiveRun:
        """Log parameters; values are converted to strings.

        Raises:
            ValidationError: For a bad key or an over-long value (nothing is logged).
        """
        clean = validation.params(params)
        with tenant_scope(self._tenant_id), translated(f"run {self.run_id!r}"):
            self._client.log_batch(
                self.run_id, params=[Param(k, v) for k, v in clean.items()], synchronous=True
            )
        return self

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, *, synchronous: bool = False
    ) -> ActiveRun:
        """Log several metrics at one step.

        Points are buffered and written in bulk by a background thread; they are all
        stored by :meth:`flush`, at the end of the run, and at interpreter exit.
        ``synchronous=True`` writes them before returning, as MLflow's ``log_batch`` does.

        Raises:
            ValidationError: For a bad key, a non-finite or non-number value, or a bad
                step (nothing is logged).
        """
        if synchronous:
            self.flush()
            with tenant_scope(self._tenant_id):
                log_metrics(self._client, self.run_id, metrics, step)
            return self
        self._metric_buffer().add_many(dict(metrics), 0 if step is None else step)
        return self

    def log_metric(
        self, key: str, value: float, step: int | None = None, *, synchronous: bool = False
    ) -> ActiveRun:
        """Log one metric at ``step`` (0 when omitted); buffered unless ``synchronous``.

        Buffered, a call costs the training loop about a microsecond.
        """
        if synchronous:
            return self.log_metrics({key: value}, step, synchronous=True)
        buffer = self._buffer or self._metric_buffer()
        buffer.add(key, value, 0 if step is None else step)
        return self

    def flush(self) -> ActiveRun:
        """Return once every metric point logged so far is stored.

        Raises:
            UnavailableError: If the store cannot be reached (the points are kept).
        """
        if self._buffer is not None:
            with translated(f"run {self.run_id!r}"):
                self._buffer.flush()
        return self

    def close(self) -> None:
        """Flush and stop the run's metric buffer (the tracker calls it at run end)."""
        if self._buffer is not None:
            with translated(f"run {self.run_id!r}"):
                self._buffer.close()

    def _metric_buffer(self) -> MetricBuffer:
        with self._buffer_lock:
            if self._buffer is None:
                self._buffer = MetricBuffer(self._write_points)
            return self._buffer

    def _write_points(self, points: list[Point]) -> None:
        with tenant_scope(self._tenant_id):
            self._writer.write(self.run_id, points)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> ActiveRun:
        """Upload a file or a folder into the run's artifacts.

        Raises:
            ValidationError: If the local path does not exist, or ``artifact_path``
                leaves the run (``..``, absolute).
        """
        path = Path(local_path)
        if not path.exists():
            raise ValidationError(
                f"No such file or folder: {str(path)!r}.", details={"field": "local_path"}
            )
        dest = validation.artifact_path(artifact_path)
        with tenant_scope(self._tenant_id), translated(f"run {self.run_id!r}"):
            if path.is_dir():
                self._client.log_artifacts(self.run_id, str(path), dest)
            else:
                self._client.log_artifact(self.run_id, str(path), dest)
        return self

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> ActiveRun:
        """Write ``dictionary`` as JSON (or YAML, by the file's suffix) into the artifacts."""
        dest = validation.artifact_path(artifact_file)
        if dest is None:
            raise ValidationError(
                "artifact_file must not be empty.", details={"field": "artifact_file"}
            )
        try:
            json.dumps(dictionary)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"dictionary is not JSON-serialisable: {exc}", details={"field": "dictionary"}
            ) from exc
        with tenant_scope(self._tenant_id), translated(f"run {self.run_id!r}"):
            self._client.log_dict(self.run_id, dict(dictionary), dest)
        return self

    def set_tag(self, key: str, value: Any) -> ActiveRun:
        """Set a tag on the run (the ``matih.`` namespace is reserved)."""
        clean = validation.tags({key: value})
        with tenant_scope(self._tenant_id), translated(f"run {self.run_id!r}"):
            self._client.log_batch(
                self.run_id, tags=[RunTag(k, v) for k, v in clean.items()], synchronous=True
            )
        return self

    def get_elapsed_time(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._started


class ExperimentTracker:
    """Tenant-scoped experiment tracking on MLflow.

    Args:
        tracking_uri: The MLflow tracking URI; default from the environment, else
            the embedded SQLite store.
        default_artifact_root: The artifact root; each tenant gets a prefix under it.
        registry_uri: The registry URI; defaults to the tracking URI.
        settings: Complete settings; explicit arguments above override them.
        token: A matih-ml API key, for an ``http(s)://`` tracking URI that is a matih-ml
            server (default: ``MLFLOW_TRACKING_TOKEN``). The tracker then logs through
            the server's MLflow protocol, the tenant from the key, and opens nothing
            locally; ``RunConfig.tenant_id`` must be the key's tenant.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        default_artifact_root: str | None = None,
        registry_uri: str | None = None,
        *,
        settings: Settings | None = None,
        events: EventLog | None = None,
        token: str | None = None,
    ) -> None:
        unconfigured = False
        if tracking_uri is None and settings is None:
            # MATIH_URL and MATIH_API_KEY name a server, as they do for the other SDK
            # classes; with no server and no server-side environment, nothing local is
            # opened either (the error comes on first use).
            if os.environ.get("MATIH_URL"):
                tracking_uri = os.environ["MATIH_URL"]
                token = token or os.environ.get("MATIH_API_KEY")
                # A server with no key must not fall back to opening stores here.
                unconfigured = not (token or os.environ.get(TOKEN_ENV))
            elif not where.local_allowed() and not os.environ.get(TOKEN_ENV):
                unconfigured = True
        self._unconfigured = unconfigured
        base = settings or Settings()
        overrides = {
            k: v
            for k, v in {
                "tracking_uri": tracking_uri,
                "artifact_root": default_artifact_root,
                "registry_uri": registry_uri,
            }.items()
            if v is not None
        }
        self.settings = base.model_copy(update={f"{k}_env": v for k, v in overrides.items()})
        self._backend: MlflowBackend | None = None
        self._tenants: TenantDirectory | None = None
        self._events = events
        self._init_lock = threading.Lock()
        self._remote = RemoteServer.of(self.settings.tracking_uri, token)
        self._remote_tenant: str | None = None

    @property
    def tracking_uri(self) -> str:
        """The tracking URI in force."""
        return self.settings.tracking_uri

    @property
    def registry_uri(self) -> str:
        """The registry URI in force."""
        return self.settings.registry_uri

    @property
    def backend(self) -> MlflowBackend:
        """The MLflow backend, connected on first use (not in the constructor)."""
        if self._backend is None:
            if self._unconfigured:
                if self.settings.tracking_uri.startswith(("http://", "https://")):
                    raise ValidationError(
                        f"ExperimentTracker has a server ({self.settings.tracking_uri}, from "
                        "MATIH_URL) but no key: set MATIH_API_KEY (or pass token=).",
                        details={"env": ["MATIH_API_KEY"]},
                    )
                raise where.no_server_error("ExperimentTracker")
            with self._init_lock:
                if self._backend is None and self._remote is not None:
                    self._remote.use()
                    url = self._remote.url
                    backend = MlflowBackend(
                        self.settings, MlflowClient(tracking_uri=url, registry_uri=url)
                    )
                    use_as_mlflow_default(backend)
                    self._backend = backend
                if self._backend is None:
                    backend = connect(self.settings)
                    # As the specification's tracker does: stock MLflow calls in user code
                    # (mlflow.pyfunc.load_model("models:/...")) reach the same stores.
                    use_as_mlflow_default(backend)
                    self._tenants = TenantDirectory(backend)
                    self._backend = backend
        return self._backend

    @property
    def events(self) -> EventLog:
        """The outbox training events go to (the service database), opened on first use."""
        if self._events is None:
            with self._init_lock:
                if self._events is None:
                    self.settings.ensure_local_dirs()
                    db = Database(self.settings.database_url)
                    if self.settings.auto_migrate:
                        migrate.upgrade(self.settings, db)
                    else:
                        migrate.require_current(self.settings, db)
                    self._events = EventLog(db, kafka=bool(self.settings.kafka_bootstrap_servers))
        return self._events

    @property
    def tenants(self) -> TenantDirectory:
        """The tenant directory of this tracker's backend."""
        _ = self.backend
        assert self._tenants is not None
        return self._tenants

    @contextmanager
    def start_run(
        self,
        experiment_name: str,
        run_config: RunConfig | None = None,
        *,
        description: str | None = None,
    ) -> Iterator[ActiveRun]:
        """Start a run in the tenant's experiment ``experiment_name``.

        The run is tagged ``matih.tenant_id``, ``matih.user_id`` and ``matih.job_id``.
        It ends FINISHED when the block completes, or FAILED when it raises (the
        exception is re-raised).

        Args:
            experiment_name: Created in the tenant on first use.
            run_config: The tenant (required), user, job and run name.
            description: Stored as the run's note.

        Raises:
            ValidationError: For a missing tenant or a bad name.
            NotFoundError: For an unknown tenant when tenants are not auto-created.
        """
        config = run_config or RunConfig()
        if config.tenant_id is None:
            raise ValidationError(
                "run_config.tenant_id is required.", details={"field": "tenant_id"}
            )
        name = validation.experiment_name(experiment_name)
        user_tags = validation.tags(config.tags)
        validation.run_name(config.run_name)
        tags = {
            **user_tags,
            TAG_TENANT: config.tenant_id,
            TAG_USER: config.user_id or "",
            TAG_JOB: config.job_id or "",
        }
        if config.user_id:
            tags["mlflow.user"] = config.user_id
        if description:
            tags["mlflow.note.content"] = description
        client = self.backend.client
        if self._remote is not None:
            tenant, run = self._start_remote(config.tenant_id, name, tags, config.run_name)
            yield from self._live(tenant, run)
            return
        events = self.events
        with self.tenants.scope(config.tenant_id, create=True) as tenant:
            experiment_id = get_or_create_experiment(client, name)
            run = training.start_run(
                client,
                events,
                tenant,
                experiment_id,
                name,
                tags=tags,
                run_name=config.run_name,
                user_id=config.user_id,
                job_id=config.job_id,
            )
        yield from self._live(tenant, run)

    def _live(self, tenant: str, run: Run) -> Iterator[ActiveRun]:
        active = ActiveRun(self.backend, tenant, run)
        try:
            yield active
        except BaseException:
            with suppress(Exception):  # the block's own error is the one to see
                active.close()
            self._end(tenant, active.run_id, RunStatus.FAILED)
            raise
        try:
            active.close()
        except BaseException:
            # Points that cannot be stored make the run FAILED, not left RUNNING.
            self._end(tenant, active.run_id, RunStatus.FAILED)
            raise
        self._end(tenant, active.run_id, RunStatus.FINISHED)

    def _start_remote(
        self, tenant_id: str, experiment: str, tags: dict[str, str], run_name: str | None
    ) -> tuple[str, Run]:
        """Start a run on a matih-ml server (which publishes its training events)."""
        assert self._remote is not None
        if self._remote_tenant is None:
            self._remote_tenant = self._remote.tenant()
        if tenant_id != self._remote_tenant:
            raise ValidationError(
                f"run_config.tenant_id is {tenant_id!r}, but the key is for tenant "
                f"{self._remote_tenant!r} on {self._remote.url}.",
                details={"field": "tenant_id"},
            )
        client = self.backend.client
        with tenant_scope(tenant_id):
            experiment_id = get_or_create_experiment(client, experiment)
            with translated(f"experiment {experiment!r}"):
                run = client.create_run(experiment_id, tags=tags, run_name=run_name)
        return tenant_id, run

    def _end(self, tenant: str, run_id: str, status: int) -> None:
        if self._remote is not None:
            with tenant_scope(tenant), translated(f"run {run_id!r}"):
                self.backend.client.set_terminated(run_id, RunStatus.to_string(status))
            return
        with tenant_scope(tenant):
            training.end_run(
                self.backend.client, self.events, tenant, run_id, RunStatus.to_string(status)
            )


_singleton: ExperimentTracker | None = None
_singleton_lock = threading.Lock()


def get_experiment_tracker() -> ExperimentTracker:
    """Return the process-wide tracker, configured from the environment.

    For user code; inside the service, trackers are passed in instead.
    """
    global _singleton
    if _singleton is None:
        with _singleton_lock:
            if _singleton is None:
                _singleton = ExperimentTracker()
    return _singleton
