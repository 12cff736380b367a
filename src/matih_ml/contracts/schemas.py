"""Request and response bodies, kept apart from the services' own types.

The API validates and publishes these; the HTTP client (``matih_ml.client``) sends and
parses the very same classes, so the two cannot disagree on a field.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from matih_ml import urls
from matih_ml.contracts.names import (
    FrameworkName,
    JobStatusName,
    RoleName,
    ServingRuntimeName,
    StageName,
    TwinStatusName,
)
from matih_ml.contracts.policy import Policy
from matih_ml.validation import MODEL_NAME_PATTERN, RUN_ID_PATTERN, VERSION_PATTERN

if TYPE_CHECKING:
    # Only the converters read them (duck-typed); importing the registry pulls MLflow.
    from matih_ml.registry.metadata import ModelMetadata, ModelVersionInfo

T = TypeVar("T")

# allow_inf_nan: json.loads reads NaN and Infinity, which no input of ours means.
_Strict = ConfigDict(extra="forbid", allow_inf_nan=False)
# A metric is a number: strict, so that true is refused rather than taken as 1.0.
Metric = Annotated[float, Field(strict=True)]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorBody(BaseModel):
    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_page_token: str | None = None


# ---------------------------------------------------------------- models


class ModelRead(BaseModel):
    model_id: str
    tenant_id: str
    name: str
    description: str
    model_type: str
    framework: str
    current_version: str
    versions: list[str]
    stage: str
    metrics: dict[str, float]
    parameters: dict[str, Any]
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime
    created_by: str
    artifact_uri: str = Field(
        description="The API path listing the current version's files ('' with no version)"
    )
    registered_version: str | None = Field(
        default=None,
        description="The version registered (registration only): new, or the one the run "
        "already had in this model",
    )
    created: bool | None = Field(
        default=None,
        description="Registration only: true when this request created registered_version "
        "(201), false when the run was registered into this model before (200)",
    )

    @classmethod
    def of(
        cls, md: ModelMetadata, registered_version: str | None = None, created: bool | None = None
    ) -> ModelRead:
        data = dict(md.__dict__)
        # The registry's own path or bucket URI stays inside the service (see matih_ml.urls).
        data["artifact_uri"] = (
            urls.version_files(md.name, md.current_version) if md.current_version else ""
        )
        if registered_version is not None and created is None:
            created = True  # an upload always makes a new version
        return cls(**data, registered_version=registered_version, created=created)


class OnnxTwinRead(BaseModel):
    """The check of an sklearn classifier's ONNX twin, made at registration."""

    status: TwinStatusName = Field(
        description="passed: the twin serves; failed or skipped: the pyfunc serves"
    )
    reason: str
    rows: int = Field(default=0, description="Rows of the input example compared")
    max_probability_diff: float | None = Field(
        default=None, description="Largest class-probability difference (passes at 1e-5)"
    )
    converter: str | None = None


class VersionRead(BaseModel):
    model_id: str
    version: str
    stage: str
    framework: str
    run_id: str | None
    source: str = Field(
        description="Where it came from: the API path of the run's artifacts it was "
        "registered from, or a runs:/ or models:/ URI"
    )
    artifact_uri: str = Field(description="The API path listing the version's own files")
    description: str
    tags: dict[str, str]
    aliases: list[str]
    created_at: datetime | None
    updated_at: datetime | None
    serving_runtime: ServingRuntimeName | None = Field(
        default=None,
        description="What scores it: onnxruntime (an ONNX version, or a checked ONNX twin), "
        "its pyfunc in the service, or its pyfunc in the tenant's sandbox (null: registered "
        "before this was recorded)",
    )
    onnx_twin: OnnxTwinRead | None = Field(
        default=None, description="An sklearn version's ONNX twin and its check (null: none)"
    )

    @classmethod
    def of(cls, v: ModelVersionInfo) -> VersionRead:
        data = dict(v.__dict__)
        data.pop("tenant_id")
        # Server paths and bucket URIs stay inside the service (see matih_ml.urls).
        data["artifact_uri"] = urls.version_files(v.model_id, v.version)
        data["source"] = urls.version_source(v.source, v.run_id, v.model_id, v.version)
        return cls(**data)


class VersionWithCard(VersionRead):
    model_card: str | None = Field(
        default=None,
        description="The version's model_card.md (with with_card=true; null if it has none)",
    )


class VersionRegistered(VersionRead):
    created: bool = Field(
        description="True when this request created the version (201), false when the run "
        "was registered into this model before (200)"
    )


class ModelCreate(BaseModel):
    """Register a model from a run that logged it (for uploads, send multipart)."""

    model_config = _Strict
    name: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME_PATTERN)
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    artifact_path: str = Field(default="model", min_length=1, max_length=256)
    framework: FrameworkName | None = None
    description: str = Field(default="", max_length=5000)
    metrics: dict[str, Metric] = {}
    parameters: dict[str, str | int | float | bool] = {}
    tags: dict[str, str] = {}


class UploadMetadata(BaseModel):
    """The ``metadata`` field of a multipart upload, as JSON."""

    model_config = _Strict
    description: str = Field(default="", max_length=5000)
    metrics: dict[str, Metric] = {}
    parameters: dict[str, str | int | float | bool] = {}
    tags: dict[str, str] = {}
    model_type: str | None = Field(default=None, max_length=32)


class VersionCreate(BaseModel):
    model_config = _Strict
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    artifact_path: str = Field(default="model", min_length=1, max_length=256)
    description: str = Field(default="", max_length=5000)
    tags: dict[str, str] = {}


class StageChange(BaseModel):
    model_config = _Strict
    version: str = Field(pattern=VERSION_PATTERN)
    stage: StageName
    reason: str = Field(default="", max_length=5000)
    force: bool = Field(default=False, description="Skip the gates (admins, with a reason)")


# ------------------------------------------------------ experiments and runs


class ExperimentRead(BaseModel):
    experiment_id: str
    name: str
    runs_url: str = Field(description="The API path listing the experiment's runs")
    lifecycle_stage: str
    tags: dict[str, str]
    creation_time: int | None
    last_update_time: int | None


class RunRead(BaseModel):
    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str = Field(
        description="The API path listing the run's artifacts (/{path} after it downloads one)"
    )
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


class RunCreate(BaseModel):
    model_config = _Strict
    experiment_name: str = Field(min_length=1, max_length=256)
    run_name: str | None = Field(default=None, max_length=250)
    tags: dict[str, str] = {}
    job_id: str = Field(default="", max_length=256)


class MetricIn(BaseModel):
    model_config = _Strict
    key: str = Field(min_length=1, max_length=250)
    value: Metric
    step: int = Field(default=0, ge=0, le=2**63 - 1)
    timestamp: int | None = Field(default=None, ge=0, le=2**63 - 1)


class LogBatch(BaseModel):
    model_config = _Strict
    metrics: list[MetricIn] = Field(default=[], max_length=10_000)
    params: dict[str, str | int | float | bool] = {}
    tags: dict[str, str] = {}


class LogBatchResult(BaseModel):
    metrics_written: int


class DatasetIn(BaseModel):
    """A dataset a run read: a file, a table or a DVC output, by URI and digest."""

    model_config = _Strict
    name: str = Field(min_length=1, max_length=500, description="What the run calls it")
    digest: str = Field(
        min_length=1,
        max_length=160,
        description="md5:, sha1:, sha256: or sha512: and the hex (bare hex: by its length)",
    )
    uri: str = Field(min_length=1, max_length=1000, description="Where it is: a URI or a path")
    source_type: str = Field(
        default="uri",
        pattern=r"^[a-z][a-z0-9_-]{0,35}$",
        description="What kind of source: dvc, uri, s3, table...",
    )


class RunInputsIn(BaseModel):
    model_config = _Strict
    datasets: list[DatasetIn] = Field(min_length=1, max_length=1000)


class DatasetRead(BaseModel):
    name: str
    digest: str
    uri: str
    source_type: str


class RunInputsRead(BaseModel):
    run_id: str
    datasets: list[DatasetRead]


class ProductionSpell(BaseModel):
    since: datetime
    until: datetime | None = Field(description="None: it serves production now")


class LineageVersion(BaseModel):
    model_id: str
    version: str
    stage: str
    production: list[ProductionSpell] = Field(
        description="When it served production, from the stage history, oldest first"
    )


class LineageRun(BaseModel):
    run_id: str
    run_name: str | None
    experiment_id: str
    datasets: list[DatasetRead] = Field(description="The run's inputs that matched")
    versions: list[LineageVersion]


class LineageRead(BaseModel):
    dataset: str = Field(description="The query, as matched: algo:hex, or the URI")
    matched_by: Literal["digest", "uri"]
    runs: list[LineageRun]


class RunEnd(BaseModel):
    model_config = _Strict
    status: str = Field(default="FINISHED", pattern="^(FINISHED|FAILED|KILLED)$")


class MetricPointRead(BaseModel):
    key: str
    value: float
    step: int
    timestamp: int


class ArtifactRead(BaseModel):
    path: str
    is_dir: bool
    file_size: int | None


class ComparisonRow(BaseModel):
    run_id: str
    run_name: str | None
    status: str
    parameters: dict[str, str]
    metrics: dict[str, float | None]


# ---------------------------------------------------------------- keys


class KeyCreate(BaseModel):
    model_config = _Strict
    role: RoleName
    name: str = Field(
        default="",
        max_length=128,
        description="Unique in the tenant. Empty: `<role>-key-<8 hex>`, a new one each time.",
    )
    owner: str = Field(
        default="",
        max_length=256,
        description="The person or service account the key belongs to; four eyes compares "
        "owners. Empty: the key's name.",
    )


class KeyRead(BaseModel):
    key_id: str
    tenant_id: str
    name: str
    owner: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    key: str = Field(description="The whole API key. It is shown this once.")


class WhoAmI(BaseModel):
    tenant_id: str
    subject: str
    owner: str
    roles: list[str]
    via: str


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


# ------------------------------------------------------------------ lifecycle


class MoveRead(BaseModel):
    id: int
    model_id: str
    version: str
    from_stage: str | None
    to_stage: str
    actor: str
    reason: str
    evidence: dict[str, Any]
    forced: bool
    at: datetime


class ProductionAt(BaseModel):
    model_id: str
    at: datetime
    version: str | None = Field(description="The version in production then (null: none)")


class RollbackRequest(BaseModel):
    model_config = _Strict
    reason: str = Field(default="", max_length=5000)


class EvaluationCreate(BaseModel):
    model_config = _Strict
    kind: Literal["shadow", "ab"]
    passed: bool
    metrics: dict[str, Metric] = {}
    notes: str = Field(default="", max_length=5000)


class EvaluationRead(BaseModel):
    id: int
    model_id: str
    version: str
    kind: str
    passed: bool
    metrics: dict[str, float]
    notes: str
    recorded_by: str
    at: datetime


class GateEvidenceRead(BaseModel):
    gate: str
    passed: bool
    reasons: list[str]
    details: dict[str, Any]
    at: datetime


class ApprovalCreate(BaseModel):
    model_config = _Strict
    comment: str = Field(default="", max_length=5000)


class ApprovalDecision(BaseModel):
    model_config = _Strict
    reason: str = Field(default="", max_length=5000)


class ApprovalRead(BaseModel):
    id: int
    model_id: str
    version: str
    status: str
    requested_by: str
    requested_at: datetime
    comment: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str


class PolicyRead(BaseModel):
    source: Literal["model", "tenant", "default"]
    policy: Policy


# ------------------------------------------------------------------ events


class EventFeed(BaseModel):
    items: list[dict[str, Any]]
    cursor: int = Field(description="Pass as `after` to get the next events")


class WebhookCreate(BaseModel):
    model_config = _Strict
    url: str = Field(min_length=1, max_length=2000, description="http:// or https://")
    event_types: list[str] = Field(
        default=[], max_length=20, description="Only these types; empty: all"
    )
    description: str = Field(default="", max_length=1000)


class WebhookRead(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    active: bool
    created_at: datetime
    created_by: str


class WebhookCreated(WebhookRead):
    secret: str = Field(description="whsec_...: verifies signatures; shown only here")


class DeliveryRead(BaseModel):
    event_id: str
    event_type: str
    sequence: int
    state: str
    attempts: int
    last_status: int | None
    last_error: str
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class MetricColumns(BaseModel):
    """Points as columns: the compact form for large batches."""

    model_config = _Strict
    keys: list[str]
    values: list[float]
    steps: list[int] | None = None
    timestamps: list[int] | None = None


class MetricRows(BaseModel):
    """Points as rows."""

    model_config = _Strict
    metrics: list[MetricIn]


class BucketRead(BaseModel):
    step_min: int
    step_max: int
    count: int
    min: float
    max: float
    mean: float


class DownsampledRead(BaseModel):
    """A history for a chart: buckets of steps, and the exact first and last points."""

    key: str
    total: int = Field(description="How many points the history holds")
    buckets: list[BucketRead]
    first: MetricPointRead | None
    last: MetricPointRead | None


# ----------------------------------------------------------------------- serving


class PredictionRead(BaseModel):
    model_id: str
    version: str
    target: str = Field(description="What answered: production, staging, @alias or vN")
    predictions: list[Any]
    latency_ms: float


class ServingConfigWrite(BaseModel):
    model_config = _Strict
    mode: Literal["off", "shadow", "ab"]
    ab_share: float = Field(default=0.0, ge=0, le=1)


class ServingConfigRead(BaseModel):
    model_id: str
    mode: str
    ab_share: float
    updated_by: str


class TrafficSummaryRead(BaseModel):
    mode: str
    staging_version: str
    production_version: str | None
    samples: int
    agreement: float | None
    mean_abs_delta: float | None
    production_mean: float | None
    staging_mean: float | None
    production_error_rate: float
    staging_error_rate: float
    production_p95_ms: float | None
    staging_p95_ms: float | None


class EvidenceCreate(BaseModel):
    model_config = _Strict
    kind: Literal["shadow", "ab"]
    min_samples: int = Field(default=100, ge=1)
    min_agreement: float = Field(default=0.95, ge=0, le=1)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_latency_ratio: float = Field(default=2.0, gt=0)
    latency_slack_ms: float = Field(
        default=5.0, ge=0, description="A staging p95 within this of production's passes"
    )


class EvidenceRead(BaseModel):
    summary: TrafficSummaryRead
    evaluation: EvaluationRead
    reasons: list[str]


class MonitoringRead(BaseModel):
    model_id: str
    version: str
    requests: int
    window: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    sla_ms: float | None
    features: dict[str, dict[str, float | bool]]
    prediction_shift: float | None
    reference: bool = Field(description="Whether a reference profile was stored at registration")
    alarms: dict[str, bool | None]
    episodes: dict[str, int]
    thresholds: dict[str, float] = Field(
        default={}, description="Where each check goes into alarm (psi, ks_pvalue, ...)"
    )


# ------------------------------------------------------------------ training jobs


class JobRead(BaseModel):
    job_id: str
    name: str
    model_name: str
    status: JobStatusName
    outcome: str | None
    reason: str | None
    result: dict[str, Any] | None
    cancel_requested: bool
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parent_run_id: str | None
    spec: dict[str, Any]


class LogLineRead(BaseModel):
    seq: int
    at: datetime
    line: str


class LogPage(BaseModel):
    items: list[LogLineRead]
    next_after: int


# ------------------------------------------------------------------ batch-scoring jobs


class BatchProgressRead(BaseModel):
    rows_done: int = Field(description="Rows scored and written so far")
    rows_total: int | None = Field(description="Rows in the input, once they are counted")


class BatchJobRead(JobRead):
    """A batch-scoring job: a training job's fields, plus what only scoring has."""

    kind: Literal["batch"]
    progress: BatchProgressRead | None = Field(
        description="Rows scored of the input's total, once the job has started"
    )
    version: str | None = Field(
        description="The model version the job resolved when it started, and scored with"
    )


class VerificationRead(BaseModel):
    """What checking a version's stored files against its signature found
    (``GET .../versions/{v}/verification``; docs/provenance.md)."""

    model: str
    version: str
    status: Literal["verified", "failed", "unsigned"] = Field(
        description="verified: the files match the signature; failed: they do not (or the "
        "signature cannot be checked); unsigned: registered before signing"
    )
    reason: str = Field(description="Why it failed, or why it is unsigned; empty when verified")
    key_id: str | None = Field(default=None, description="The key that signed it")
    signature_digest: str | None = Field(
        default=None, description="sha256 of the signature file, as recorded on the version"
    )
    files: list[str] = Field(default=[], description="The files that differ, when known")
    promotable: bool = Field(
        description="Whether the gates let it move up: verified, or unsigned while "
        "MATIH_UNSIGNED_VERSIONS=allow"
    )
