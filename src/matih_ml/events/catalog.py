"""The event catalog: every lifecycle event's type, version and data, as JSON schemas.

An event on the wire (webhook body, Kafka value, feed item) is an :class:`Event`:

    {"id": "evt_...", "type": "MODEL_STAGE_CHANGED", "schema_version": 1,
     "tenant_id": "acme", "sequence": 42, "time": "2026-11-23T01:02:03.456Z",
     "subject": "churn", "data": {...}}

``sequence`` counts up by one per tenant, in the order the changes were committed.
``subject`` is the model's name, or ``run/<run id>`` for training events; events with
the same subject are delivered in sequence order.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from matih_ml.errors import ValidationError

SCHEMA_VERSION = 1


class EventType(StrEnum):
    """Every event the service publishes."""

    MODEL_TRAINING_STARTED = "MODEL_TRAINING_STARTED"
    MODEL_TRAINING_COMPLETED = "MODEL_TRAINING_COMPLETED"
    MODEL_REGISTERED = "MODEL_REGISTERED"
    MODEL_STAGE_CHANGED = "MODEL_STAGE_CHANGED"
    MODEL_DEPLOYED = "MODEL_DEPLOYED"
    MODEL_DRIFT_DETECTED = "MODEL_DRIFT_DETECTED"
    MODEL_LATENCY_ALERT = "MODEL_LATENCY_ALERT"
    MODEL_ERROR_RATE_ALERT = "MODEL_ERROR_RATE_ALERT"
    MODEL_VERSION_DELETED = "MODEL_VERSION_DELETED"
    APPROVAL_REQUESTED = "APPROVAL_REQUESTED"
    APPROVAL_APPROVED = "APPROVAL_APPROVED"
    APPROVAL_REJECTED = "APPROVAL_REJECTED"
    BATCH_INFERENCE_STARTED = "BATCH_INFERENCE_STARTED"
    BATCH_INFERENCE_COMPLETED = "BATCH_INFERENCE_COMPLETED"
    MODEL_INTEGRITY_FAILED = "MODEL_INTEGRITY_FAILED"


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingStarted(_Data):
    """A run started (``ExperimentTracker.start_run``)."""

    run_id: str
    experiment_id: str
    experiment_name: str
    run_name: str | None = None
    user_id: str | None = None
    job_id: str | None = None


class JobOutcome(_Data):
    """What a training job did: ``registered``, ``not_registered``, ``failed`` or
    ``cancelled``, why, and the version it registered (and its stage), if any."""

    status: Literal["registered", "not_registered", "failed", "cancelled"]
    reason: str
    registered_version: str | None = None
    stage: str | None = None


class TrainingCompleted(_Data):
    """A run ended; ``status`` says how. A training job's own run carries the job's id
    and ``outcome``."""

    run_id: str
    experiment_id: str
    status: Literal["FINISHED", "FAILED", "KILLED"]
    metrics: dict[str, float] = {}
    job_id: str | None = None
    outcome: JobOutcome | None = None


class Registered(_Data):
    """A new version exists, with all its files."""

    model: str
    version: str
    framework: str
    run_id: str | None = None
    # The API address of its files (/api/v1/models/{model}/versions/{version}/files),
    # never the server's folder or bucket URI.
    artifact_uri: str
    created_by: str = ""


class StageChanged(_Data):
    """A version moved from one stage to another (through the gates, or forced)."""

    model: str
    version: str
    from_stage: str | None
    to_stage: str
    actor: str
    reason: str = ""
    forced: bool = False
    evidence: dict[str, Any] = {}


class Deployed(_Data):
    """A version became the one served for its stage (production: what clients get)."""

    model: str
    version: str
    stage: str
    actor: str
    replaced: str | None = Field(default=None, description="The version it took over from")


class DriftDetected(_Data):
    """Monitoring found a served version's inputs (PSI and KS) or predictions (mean
    shift in reference standard deviations) drifting, once per episode."""

    model: str
    version: str
    metric: str
    value: float
    threshold: float
    features: list[str] = []


class ServingAlert(_Data):
    """A served version's p95 latency went over its SLA, or its error rate over 1 %
    (once per episode: again only after it has recovered)."""

    model: str
    version: str
    metric: str
    value: float
    threshold: float
    window: int = Field(description="Requests in the window the figure comes from")


class VersionDeleted(_Data):
    """A version was deleted, with its files."""

    model: str
    version: str
    actor: str = ""


class ApprovalRequested(_Data):
    """Someone asked for a staging version to be approved for production."""

    approval_id: int
    model: str
    version: str
    requested_by: str
    comment: str = ""


class ApprovalDecided(_Data):
    """A second person approved or rejected a request."""

    approval_id: int
    model: str
    version: str
    requested_by: str
    decided_by: str
    reason: str = ""


class BatchStarted(_Data):
    """A batch inference job resolved its version and began to score its input."""

    job_id: str
    model: str
    version: str = Field(description="The version resolved when the job started")
    input: str = Field(description="The input's path as the job names it")
    rows_total: int | None = Field(default=None, description="None: not known up front")


class BatchCompleted(_Data):
    """A batch inference job wrote every row's scores to its output."""

    job_id: str
    model: str
    version: str
    rows: int
    output: str = Field(description="The output's path as the job names it")
    seconds: float


class IntegrityFailed(_Data):
    """A version's files no longer match its signature (or its signature cannot be
    checked): it was refused where it was checked, once per episode."""

    model: str
    version: str
    reason: str
    where: Literal["promotion", "serving", "batch", "download"]
    key_id: str | None = None
    signature_digest: str | None = None
    files: list[str] = Field(default=[], description="The files that differ, when known")


DATA: dict[EventType, type[_Data]] = {
    EventType.MODEL_TRAINING_STARTED: TrainingStarted,
    EventType.MODEL_TRAINING_COMPLETED: TrainingCompleted,
    EventType.MODEL_REGISTERED: Registered,
    EventType.MODEL_STAGE_CHANGED: StageChanged,
    EventType.MODEL_DEPLOYED: Deployed,
    EventType.MODEL_DRIFT_DETECTED: DriftDetected,
    EventType.MODEL_LATENCY_ALERT: ServingAlert,
    EventType.MODEL_ERROR_RATE_ALERT: ServingAlert,
    EventType.MODEL_VERSION_DELETED: VersionDeleted,
    EventType.APPROVAL_REQUESTED: ApprovalRequested,
    EventType.APPROVAL_APPROVED: ApprovalDecided,
    EventType.APPROVAL_REJECTED: ApprovalDecided,
    EventType.BATCH_INFERENCE_STARTED: BatchStarted,
    EventType.BATCH_INFERENCE_COMPLETED: BatchCompleted,
    EventType.MODEL_INTEGRITY_FAILED: IntegrityFailed,
}


class Event(BaseModel):
    """The envelope every event travels in."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique; receivers deduplicate by it (the webhook-id header)")
    type: EventType
    schema_version: int = SCHEMA_VERSION
    tenant_id: str
    sequence: int = Field(description="1, 2, 3... per tenant, in commit order")
    time: str = Field(description="When the change was committed, ISO 8601 UTC")
    subject: str = Field(description="The model's name, or run/<run id>")
    data: dict[str, Any]


def parse_types(types: Iterable[str] | str | None, field: str) -> tuple[EventType, ...]:
    """The event types named (one name alone is one type, not its letters), in order.

    Raises:
        ValidationError: A name is not a type; names ``field`` and lists the known ones.
    """
    if isinstance(types, str):
        types = [types]
    out = []
    for t in types or ():
        try:
            out.append(EventType(t))
        except ValueError:
            raise ValidationError(
                f"Unknown event type {str(t)[:60]!r}.",
                details={"field": field, "known": [e.value for e in EventType]},
            ) from None
    return tuple(out)


def check_data(event_type: EventType, data: dict[str, Any]) -> dict[str, Any]:
    """Validate ``data`` against its type's schema; return it as plain JSON data."""
    return DATA[event_type].model_validate(data).model_dump(mode="json")


def json_schemas() -> dict[str, Any]:
    """The catalog as JSON schemas: the envelope, and each type's ``data``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "envelope": Event.model_json_schema(),
        "types": {t.value: DATA[t].model_json_schema() for t in EventType},
    }
