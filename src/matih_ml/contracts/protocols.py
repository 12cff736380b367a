"""One contract per domain, as the REST API exposes it to a tenant.

Each ``Protocol`` here is a door onto one resource family of ``/api/v1``: the HTTP
client's sub-clients (``matih_ml.client``) implement them, and an in-process adapter over
the services can implement them too, so that the SDK and the CLI are written once against
the contract and run either way.

Rules every contract follows:

- The tenant is the credential's: no method takes a tenant argument.
- Methods take the values a route takes (path parameters positionally, the body's and the
  query's fields by keyword, with the route's defaults) and return the route's response
  model from ``matih_ml.contracts.schemas``.
- A route answering ``204`` returns ``None``. Pages are ``Page[...]`` with
  ``next_page_token``; the client adds ``all()`` helpers that walk them.
- Errors are ``matih_ml.errors`` classes, whichever side raises them: ``NotFoundError``
  (which is also what another tenant's object is), ``ForbiddenError``,
  ``ValidationError``, ``ConflictError``, ``GateFailedError``, ``UnavailableError``...

``tests/client/test_contracts.py`` checks that every route has a method here and that the
client's methods have the same names, parameters, defaults and types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from matih_ml.batch_spec import BatchSpec
from matih_ml.contracts.names import (
    ApprovalStatusName,
    DeliveryStateName,
    EvaluationKindName,
    FrameworkName,
    JobStatusName,
    RoleName,
    RunStatusName,
    StageName,
    TrafficModeName,
    UploadFrameworkName,
)
from matih_ml.contracts.policy import Policy
from matih_ml.contracts.schemas import (
    ApprovalRead,
    ArtifactRead,
    BatchJobRead,
    ComparisonRow,
    DatasetIn,
    DeliveryRead,
    DownsampledRead,
    EvaluationRead,
    EventFeed,
    EvidenceCreate,
    EvidenceRead,
    ExperimentRead,
    GateEvidenceRead,
    Health,
    JobRead,
    KeyCreated,
    KeyRead,
    LineageRead,
    LogBatchResult,
    LogPage,
    MetricIn,
    MetricPointRead,
    ModelRead,
    MonitoringRead,
    MoveRead,
    Page,
    PolicyRead,
    PredictionRead,
    ProductionAt,
    RunInputsRead,
    RunRead,
    ServingConfigRead,
    TrafficSummaryRead,
    VerificationRead,
    VersionRead,
    VersionRegistered,
    VersionWithCard,
    WebhookCreated,
    WebhookRead,
    WhoAmI,
)
from matih_ml.job_spec import JobSpec

# What a parameter's value may be (MLflow keeps them as strings).
ParamValue = str | int | float | bool
# Lists as aliases: inside a class with a ``list`` method, a bare ``list[...]`` annotation
# would name the method for a type checker.
ArtifactList = list[ArtifactRead]
ComparisonRows = list[ComparisonRow]
# A model file to upload: its bytes, a path to it, or an open binary file.
ModelFile = bytes | str | Path | BinaryIO


@runtime_checkable
class SessionContract(Protocol):
    """Who the credential is, and whether the server is ready."""

    def whoami(self) -> WhoAmI:
        """The credential's tenant, subject, owner and roles (``GET /api/v1/whoami``).

        Raises:
            UnauthenticatedError: The credential is missing or not valid.
        """
        ...

    def health(self) -> Health:
        """Whether each dependency answers (``GET /readyz``); never raises for a 503.

        Returns:
            ``status`` ``ok`` or ``unavailable``, and one check per dependency.
        """
        ...


@runtime_checkable
class RegistryContract(Protocol):
    """Registered models, their versions and their files (``/api/v1/models``)."""

    def list(
        self,
        *,
        stage: StageName | None = None,
        framework: FrameworkName | None = None,
        q: str | None = None,
        tag: str | None = None,
        page_token: str | None = None,
        max_results: int = 100,
    ) -> Page[ModelRead]:
        """One page of the tenant's models.

        Args:
            stage: Only models whose own stage (their most advanced version's) is this.
            framework: Only this framework.
            q: Only names containing this, in any case.
            tag: ``key=value``: only models with this tag.
            page_token: ``next_page_token`` of the previous page.
            max_results: At most this many (1 to 1,000).
        """
        ...

    def get(self, model_id: str) -> ModelRead:
        """One model.

        Raises:
            NotFoundError: No such model in the tenant.
        """
        ...

    def delete(self, model_id: str) -> None:
        """Delete a model and all its versions (admins; refused while one is in production).

        Raises:
            ConflictError: A version is in production.
        """
        ...

    def register(
        self,
        name: str,
        run_id: str,
        *,
        artifact_path: str = "model",
        framework: FrameworkName | None = None,
        description: str = "",
        metrics: Mapping[str, float] | None = None,
        parameters: Mapping[str, ParamValue] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelRead:
        """Register the model a run logged, as a new model or its next version.

        The same run again is not a new version: the answer names the version it has
        (``registered_version``) with ``created`` false.

        Args:
            name: The model's name (created on first use).
            run_id: The run whose artifacts hold the model.
            artifact_path: Where in the run's artifacts (``model``), or an MLflow 3
                logged model.
            framework: Read from the model's MLmodel when not given.
            description: The model's description.
            metrics: Figures to keep on the model (the gates read them).
            parameters: Training parameters to keep on the model.
            tags: Tags for the version.

        Returns:
            The model; ``registered_version`` is the version registered.
        """
        ...

    def upload(
        self,
        name: str,
        file: ModelFile,
        *,
        framework: UploadFrameworkName,
        description: str = "",
        metrics: Mapping[str, float] | None = None,
        parameters: Mapping[str, ParamValue] | None = None,
        tags: Mapping[str, str] | None = None,
        model_type: str | None = None,
    ) -> ModelRead:
        """Register a model file: a sklearn pickle or joblib, ONNX, or TorchScript.

        Args:
            name: The model's name (created on first use).
            file: The file's bytes, its path, or an open binary file.
            framework: ``sklearn``, ``onnx`` or ``pytorch``.
            description: The model's description.
            metrics: Figures to keep on the model.
            parameters: Training parameters to keep on the model.
            tags: Tags for the version.
            model_type: A free label (``classifier``...), at most 32 characters.

        Returns:
            The model; ``registered_version`` is the new version.
        """
        ...

    def create_version(
        self,
        model_id: str,
        run_id: str,
        *,
        artifact_path: str = "model",
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> VersionRegistered:
        """Register a run's model as a new version of an existing model.

        Returns:
            The version; ``created`` is false when the run was registered here before.
        """
        ...

    def list_versions(self, model_id: str) -> Page[VersionRead]:
        """A model's versions, newest first (one page holds them all)."""
        ...

    def get_version(
        self, model_id: str, version: str | int, *, with_card: bool = False
    ) -> VersionWithCard:
        """One version; with ``with_card``, its model card (``model_card.md``) too."""
        ...

    def delete_version(self, model_id: str, version: str | int) -> None:
        """Delete a development, staging or archived version (admins)."""
        ...

    def list_files(
        self, model_id: str, version: str | int, path: str | None = None
    ) -> ArtifactList:
        """The version's own files (the registry's copy) directly under ``path``."""
        ...

    def read_file(self, model_id: str, version: str | int, path: str) -> bytes:
        """The bytes of one of the version's files."""
        ...

    def verify(self, model_id: str, version: str | int) -> VerificationRead:
        """Check the version's stored files against its signature (a report: nothing is
        refused or published; docs/provenance.md)."""
        ...

    def bom(self, model_id: str, version: str | int) -> dict[str, Any]:
        """The version's ML bill of materials: a CycloneDX 1.6 JSON document (the model
        and its model card, requirements.txt's exact pins, the training run, its datasets
        and Feast views, the signature's digest; docs/provenance.md)."""
        ...

    def download(
        self, model_id: str, version: str | int, dest: str | Path, *, path: str | None = None
    ) -> Path:
        """Copy the version's files (under ``path``, or all of them) into the folder ``dest``.

        Files keep their relative paths; ``dest`` is created if missing, and a path that
        would land outside it is refused.

        Returns:
            ``dest``.
        """
        ...


@runtime_checkable
class LifecycleContract(Protocol):
    """Stage moves and their record: transition, rollback, history, evaluations, gates."""

    def transition(
        self,
        model_id: str,
        version: str | int,
        stage: StageName,
        *,
        reason: str = "",
        force: bool = False,
    ) -> ModelRead:
        """Move a version to another stage through the gates (``PUT .../stage``).

        Args:
            model_id: The model.
            version: The version to move.
            stage: ``development``, ``staging``, ``production`` or ``archived``.
            reason: Why; kept in the history.
            force: Skip the gates (admins, with a reason).

        Raises:
            GateFailedError: A gate refused; ``details['reasons']`` says why.
            ForbiddenError: The role may not move it (or force).
        """
        ...

    def rollback(self, model_id: str, *, reason: str = "") -> ModelRead:
        """Put the previous production version back; the current one goes to development."""
        ...

    def history(self, model_id: str) -> Page[MoveRead]:
        """Every stage move of the model: who, when, from, to, why, evidence, forced."""
        ...

    def production_at(self, model_id: str, at: datetime | None = None) -> ProductionAt:
        """Which version served production at ``at`` (now by default)."""
        ...

    def record_evaluation(
        self,
        model_id: str,
        version: str | int,
        *,
        kind: EvaluationKindName,
        passed: bool,
        metrics: Mapping[str, float] | None = None,
        notes: str = "",
    ) -> EvaluationRead:
        """Record a shadow or A/B evaluation (``kind``): the evidence the production gate
        reads."""
        ...

    def list_evaluations(self, model_id: str, version: str | int) -> Page[EvaluationRead]:
        """A version's evaluations."""
        ...

    def gates(self, model_id: str, version: str | int) -> Page[GateEvidenceRead]:
        """The gate outcomes stored on a version, passed or failed, with reasons."""
        ...


@runtime_checkable
class ApprovalsContract(Protocol):
    """Four-eyes approvals of staging versions for production."""

    def request(self, model_id: str, version: str | int, *, comment: str = "") -> ApprovalRead:
        """Ask for a staging version to be approved for production (editors)."""
        ...

    def list(
        self, *, status: ApprovalStatusName | None = None, model_id: str | None = None
    ) -> Page[ApprovalRead]:
        """The tenant's approval requests, newest first."""
        ...

    def get(self, approval_id: int) -> ApprovalRead:
        """One approval request."""
        ...

    def approve(self, approval_id: int, *, reason: str = "") -> ApprovalRead:
        """Approve a pending request (approvers; never one of your own owner's)."""
        ...

    def reject(self, approval_id: int, *, reason: str = "") -> ApprovalRead:
        """Reject a pending request, with a reason (approvers)."""
        ...


@runtime_checkable
class PolicyContract(Protocol):
    """The promotion policy: the tenant's, or one model's override."""

    def get(self, model_id: str | None = None) -> PolicyRead:
        """The policy in force (for ``model_id``, or the tenant's) and where it comes from."""
        ...

    def set(self, policy: Policy, model_id: str | None = None) -> PolicyRead:
        """Set the tenant's policy, or ``model_id``'s override (admins)."""
        ...

    def clear(self, model_id: str | None = None) -> None:
        """Remove the tenant's policy (the default applies) or ``model_id``'s override."""
        ...


@runtime_checkable
class ExperimentsContract(Protocol):
    """Experiments, their runs, and run comparison (tracking)."""

    def list(
        self, *, page_token: str | None = None, max_results: int = 100
    ) -> Page[ExperimentRead]:
        """One page of the tenant's experiments."""
        ...

    def get(self, experiment_id: str) -> ExperimentRead:
        """One experiment."""
        ...

    def list_runs(
        self, experiment_id: str, *, page_token: str | None = None, max_results: int = 100
    ) -> Page[RunRead]:
        """One page of an experiment's runs, newest first."""
        ...

    def compare(
        self,
        run_ids: Sequence[str],
        *,
        metrics: Sequence[str] = (),
        only_differences: bool = False,
    ) -> ComparisonRows:
        """Runs side by side: their parameters and the ``metrics`` asked for."""
        ...


@runtime_checkable
class RunsContract(Protocol):
    """Runs: create, log, end, read, metric history and artifacts (tracking)."""

    def create(
        self,
        experiment_name: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        job_id: str = "",
    ) -> RunRead:
        """Start a run in an experiment (created on first use)."""
        ...

    def get(self, run_id: str) -> RunRead:
        """One run."""
        ...

    def end(self, run_id: str, status: RunStatusName = "FINISHED") -> RunRead:
        """End a run as FINISHED, FAILED or KILLED."""
        ...

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[MetricIn | Mapping[str, Any]] = (),
        params: Mapping[str, ParamValue] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LogBatchResult:
        """Log up to 10,000 metric points, params and tags in one call; a bad item writes
        nothing.

        Args:
            run_id: The run.
            metrics: Points as ``MetricIn`` or ``{"key", "value", "step", "timestamp"}``.
            params: Parameters (a logged one cannot change).
            tags: Tags.
        """
        ...

    def log_metrics(
        self,
        run_id: str,
        keys: Sequence[str],
        values: Sequence[float],
        *,
        steps: Sequence[int] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> LogBatchResult:
        """Write up to 200,000 metric points as columns (``metrics:batch``); a bad point
        writes nothing.

        Args:
            run_id: The run.
            keys: Each point's metric key.
            values: Each point's value.
            steps: Each point's step (0 when not given).
            timestamps: Each point's time in ms (now when not given).
        """
        ...

    def metric_history(
        self,
        run_id: str,
        key: str,
        *,
        page_token: str | None = None,
        max_results: int = 1000,
    ) -> Page[MetricPointRead]:
        """One page of a metric's points, by step."""
        ...

    def downsampled_history(self, run_id: str, key: str, max_points: int) -> DownsampledRead:
        """A metric's history for a chart: at most ``max_points`` buckets, plus the exact
        first and last points."""
        ...

    def list_artifacts(self, run_id: str, path: str | None = None) -> ArtifactList:
        """The run's artifacts directly under ``path``."""
        ...

    def upload_artifact(self, run_id: str, path: str, data: bytes) -> ArtifactRead:
        """Store ``data`` as the run's artifact ``path``."""
        ...

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of one of the run's artifact files."""
        ...

    def log_inputs(
        self, run_id: str, datasets: Sequence[DatasetIn | Mapping[str, Any]]
    ) -> RunInputsRead:
        """Record the datasets a run read (``POST /api/v1/runs/{run_id}/inputs``): MLflow
        dataset inputs on the run, and the tenant's lineage index. Recording one again
        changes nothing.

        Args:
            run_id: The run.
            datasets: 1 to 1000 of ``DatasetIn`` or ``{"name", "digest", "uri",
                "source_type"}``; a digest is ``md5:``, ``sha1:``, ``sha256:`` or
                ``sha512:`` and its hex (bare hex is read by its length).

        Returns:
            Every input the run has.
        """
        ...

    def lineage(self, dataset: str) -> LineageRead:
        """Which runs read a dataset (by digest or URI), which versions were registered
        from them, and when those served production (``GET /api/v1/lineage``)."""
        ...


@runtime_checkable
class EventsContract(Protocol):
    """The pull feed of the tenant's events."""

    def feed(
        self, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 100
    ) -> EventFeed:
        """The tenant's events after sequence ``after``, oldest first.

        Poll with ``after`` set to the returned ``cursor``.

        Args:
            after: The last sequence seen (0: from the start).
            types: Only these event types (``MODEL_REGISTERED``...).
            limit: At most this many (1 to 1,000).
        """
        ...

    def schemas(self) -> dict[str, Any]:
        """The event catalog: the envelope's JSON schema and each type's ``data`` schema."""
        ...


@runtime_checkable
class JobsContract(Protocol):
    """Training jobs: submit, read, list, cancel, and their logs."""

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> JobRead:
        """Queue a training job.

        Raises:
            ValidationError: The spec is not valid; ``details['field']`` names the field.
            LimitExceededError: The tenant has its limit of jobs queued or running.
        """
        ...

    def list(
        self,
        *,
        status: JobStatusName | None = None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> Page[JobRead]:
        """One page of the tenant's jobs, newest first."""
        ...

    def get(self, job_id: str) -> JobRead:
        """One job: its status, and once finished its outcome, reason and figures."""
        ...

    def cancel(self, job_id: str) -> JobRead:
        """Cancel a queued job, or ask a running one to stop.

        Raises:
            ConflictError: The job has finished.
        """
        ...

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        """The job's log lines after ``after`` (pass back ``next_after`` to follow)."""
        ...


@runtime_checkable
class BatchJobsContract(Protocol):
    """Batch-scoring jobs: score a table with a model, on Ray Data, into parquet.

    They share the training jobs' queue, executor, limit, cancel and logs; a training
    job's id here is not found, as a batch job's is among training jobs.
    """

    def submit(self, spec: BatchSpec | Mapping[str, Any]) -> BatchJobRead:
        """Queue a batch-scoring job.

        Raises:
            ValidationError: The spec is not valid, or a path is not under the tenant's
                data root or ``s3://`` prefix; ``details['field']`` names the field.
            NotFoundError: The tenant has no such model.
            LimitExceededError: The tenant has its limit of jobs queued or running.
        """
        ...

    def list(
        self,
        *,
        status: JobStatusName | None = None,
        limit: int = 100,
        page_token: str | None = None,
    ) -> Page[BatchJobRead]:
        """One page of the tenant's batch jobs, newest first."""
        ...

    def get(self, job_id: str) -> BatchJobRead:
        """One batch job: its status, progress (rows scored of total), the version it
        scores with, and once finished its outcome, reason and result."""
        ...

    def cancel(self, job_id: str) -> BatchJobRead:
        """Cancel a queued batch job, or ask a running one to stop (it leaves no output).

        Raises:
            ConflictError: The job has finished.
        """
        ...

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        """The job's log lines after ``after`` (pass back ``next_after`` to follow)."""
        ...


@runtime_checkable
class ServingContract(Protocol):
    """Predictions, traffic modes (shadow, A/B), their evidence, and monitoring."""

    def predict(
        self,
        model_id: str,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
        inputs: Sequence[Any] | None = None,
        stage: str | None = None,
        alias: str | None = None,
        version: str | int | None = None,
    ) -> PredictionRead:
        """Score up to 1,000 rows with the production version, or the one named.

        Args:
            model_id: The model.
            records: Rows as ``{feature: value}`` (a model with a column signature).
            inputs: Tensor rows (PyTorch, ONNX).
            stage: ``production`` (the default) or ``staging``.
            alias: A registered alias.
            version: A version number (editors, unless it is in staging or production).
        """
        ...

    def predict_batch(
        self,
        model_id: str,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
        inputs: Sequence[Any] | None = None,
        stage: str | None = None,
        alias: str | None = None,
        version: str | int | None = None,
    ) -> PredictionRead:
        """Score up to 100,000 rows, in chunks, with one version throughout."""
        ...

    def get_config(self, model_id: str) -> ServingConfigRead:
        """The model's traffic mode: off, shadow or A/B."""
        ...

    def set_config(
        self, model_id: str, mode: TrafficModeName, *, ab_share: float = 0.0
    ) -> ServingConfigRead:
        """Set the traffic mode: ``shadow`` (staging scores a copy of each request) or
        ``ab`` (``ab_share`` of production traffic is answered by staging)."""
        ...

    def summary(self, model_id: str, *, mode: EvaluationKindName = "shadow") -> TrafficSummaryRead:
        """What shadow or A/B traffic has shown about the staging version so far."""
        ...

    def record_evidence(self, model_id: str, evidence: EvidenceCreate) -> EvidenceRead:
        """Judge the staging version's live traffic and record the evaluation the
        production gate reads."""
        ...

    def monitoring(self, model_id: str, *, version: str | int | None = None) -> MonitoringRead:
        """A served version's drift, latency, error rate and alarms (production's by
        default)."""
        ...


@runtime_checkable
class WebhooksContract(Protocol):
    """The tenant's webhooks and their deliveries (admins)."""

    def create(
        self, url: str, *, event_types: Sequence[str] = (), description: str = ""
    ) -> WebhookCreated:
        """Add a webhook; its signing secret is in this answer only."""
        ...

    def list(self) -> Page[WebhookRead]:
        """The tenant's webhooks."""
        ...

    def get(self, webhook_id: str) -> WebhookRead:
        """One webhook."""
        ...

    def delete(self, webhook_id: str) -> None:
        """Remove a webhook; what it had not received yet is cancelled."""
        ...

    def deliveries(
        self, webhook_id: str, *, state: DeliveryStateName | None = None, limit: int = 100
    ) -> Page[DeliveryRead]:
        """The webhook's deliveries, newest first."""
        ...


@runtime_checkable
class KeysContract(Protocol):
    """The tenant's API keys (admins)."""

    def create(self, role: RoleName, *, name: str = "", owner: str = "") -> KeyCreated:
        """Make an API key; the whole key is in this answer only."""
        ...

    def list(self) -> Page[KeyRead]:
        """The tenant's keys (never their secrets)."""
        ...

    def revoke(self, key_id: str) -> KeyRead:
        """Revoke a key."""
        ...


# Domain name -> contract, as the client's attributes are named.
CONTRACTS: dict[str, type] = {
    "models": RegistryContract,
    "lifecycle": LifecycleContract,
    "approvals": ApprovalsContract,
    "policy": PolicyContract,
    "experiments": ExperimentsContract,
    "runs": RunsContract,
    "events": EventsContract,
    "jobs": JobsContract,
    "batch": BatchJobsContract,
    "serving": ServingContract,
    "webhooks": WebhooksContract,
    "keys": KeysContract,
}
