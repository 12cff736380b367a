"""ORM rows of the service's own tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Base of the service's tables (all prefixed ``matih_`` to sit beside MLflow's)."""


class TenantOwned:
    """A row that belongs to one tenant.

    The session's tenant filter (:mod:`matih_ml.store.tenant_filter`) adds
    ``tenant_id = <the session's tenant>`` to every ORM read, bulk update and bulk
    delete of these tables, and refuses to write a row of another tenant; a session
    with no tenant and not opened as unscoped raises instead of reading. Tables whose
    key starts with the tenant declare the column again, as part of the primary key.
    """

    tenant_id: Mapped[str] = mapped_column(String(63), nullable=False)


class ApiKeyRow(TenantOwned, Base):
    """An API key. Only a salted hash of its secret is kept."""

    __tablename__ = "matih_api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    # The person or service account behind the key; four eyes compares these.
    owner: Mapped[str] = mapped_column(String(256), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    salt: Mapped[str] = mapped_column(String(32), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("ix_matih_api_keys_tenant", "tenant_id"),
        UniqueConstraint("tenant_id", "name", name="uq_matih_api_keys_tenant_name"),
    )


class ModelLockRow(TenantOwned, Base):
    """One row per model: taking it ``FOR UPDATE`` (or updating it, on SQLite)
    serialises every stage move of that model, across threads and replicas."""

    __tablename__ = "matih_model_locks"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    moves: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class VersionStageRow(TenantOwned, Base):
    """The stage of each version: the lifecycle's source of truth."""

    __tablename__ = "matih_version_stages"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class StageProjectionRow(TenantOwned, Base):
    """A model whose stages MLflow does not show yet: written with the stage move, deleted
    once MLflow's stage field, version tags and aliases match our store."""

    __tablename__ = "matih_stage_projections"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class StageHistoryRow(TenantOwned, Base):
    """Append-only: one row per stage move (never updated, never deleted)."""

    __tablename__ = "matih_stage_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    from_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(256), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    evidence: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    forced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_matih_stage_history_model", "tenant_id", "model_name", "id"),)


class PolicyRow(TenantOwned, Base):
    """A tenant's promotion policy (model_name '') or a model's override."""

    __tablename__ = "matih_policies"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True, default="")
    policy: Mapped[dict] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_by: Mapped[str] = mapped_column(String(256), nullable=False, default="")


class EvaluationRow(TenantOwned, Base):
    """A recorded shadow or A/B evaluation of a version."""

    __tablename__ = "matih_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    metrics: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    recorded_by: Mapped[str] = mapped_column(String(256), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_matih_evaluations_version", "tenant_id", "model_name", "version"),)


class ApprovalRow(TenantOwned, Base):
    """A request to promote a version to production, and its decision."""

    __tablename__ = "matih_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    requested_by: Mapped[str] = mapped_column(String(256), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False, default="")
    decided_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")

    __table_args__ = (Index("ix_matih_approvals_tenant_status", "tenant_id", "status"),)


class GateEvidenceRow(TenantOwned, Base):
    """The outcome of a gate check on a version, passed or failed, with its reasons."""

    __tablename__ = "matih_gate_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    gate: Mapped[str] = mapped_column(String(32), nullable=False)
    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reasons: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    details: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_matih_gate_evidence_version", "tenant_id", "model_name", "version"),
    )


# ------------------------------------------------------------------------- events


class EventRow(TenantOwned, Base):
    """One lifecycle event: the outbox.

    ``state`` is ``intent`` while the MLflow change it describes is not known to have
    happened (no sequence number yet, never delivered), then ``ready``. ``payload``
    is the event exactly as delivered, built when it becomes ready.
    """

    __tablename__ = "matih_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    subject: Mapped[str] = mapped_column(String(160), nullable=False)
    state: Mapped[str] = mapped_column(String(8), nullable=False)
    sequence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    data: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ux_matih_events_tenant_seq", "tenant_id", "sequence", unique=True),
        Index("ix_matih_events_state_created", "state", "created_at"),
    )


class EventSequenceRow(TenantOwned, Base):
    """The last sequence number given out per tenant (its row lock orders a tenant's events)."""

    __tablename__ = "matih_event_sequences"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class WebhookRow(TenantOwned, Base):
    """A tenant's webhook endpoint. The signing secret is stored encrypted."""

    __tablename__ = "matih_webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    event_types: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    secret_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(256), nullable=False, default="")

    __table_args__ = (Index("ix_matih_webhooks_tenant", "tenant_id"),)


class DeliveryRow(TenantOwned, Base):
    """One event on its way to one sink (a webhook, or Kafka)."""

    __tablename__ = "matih_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), nullable=False)
    sink: Mapped[str] = mapped_column(String(64), nullable=False)
    # Deliveries with the same key go out in sequence order (one model's events).
    order_key: Mapped[str] = mapped_column(String(240), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(12), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_matih_deliveries_due", "state", "next_attempt_at"),
        Index("ix_matih_deliveries_order", "sink", "order_key", "state", "sequence"),
        Index("ix_matih_deliveries_event", "event_id"),
    )


class ServingConfigRow(TenantOwned, Base):
    """How a model's traffic is split: off, shadow (staging scores a copy) or A/B."""

    __tablename__ = "matih_serving_configs"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(String(8), nullable=False)
    ab_share: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    updated_by: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ServingSampleRow(TenantOwned, Base):
    """One shadow pair or one A/B outcome: the evidence the production gate can read."""

    __tablename__ = "matih_serving_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    mode: Mapped[str] = mapped_column(String(8), nullable=False)
    production_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    staging_version: Mapped[int] = mapped_column(Integer, nullable=False)
    # shadow: both sides; A/B: only the arm that answered ("production" or "staging").
    arm: Mapped[str | None] = mapped_column(String(16), nullable=True)
    prediction_a: Mapped[object | None] = mapped_column(JSON, nullable=True)
    prediction_b: Mapped[object | None] = mapped_column(JSON, nullable=True)
    latency_a_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_b_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    error_a: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    error_b: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_matih_serving_samples_model", "tenant_id", "model_name", "staging_version"),
    )


class ServingStateRow(TenantOwned, Base):
    """The version last seen serving a model's target, so a switch is announced once."""

    __tablename__ = "matih_serving_state"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    target: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class MonitorEpisodeRow(TenantOwned, Base):
    """Whether a check is in alarm for a served version: an alert fires once per episode."""

    __tablename__ = "matih_monitor_episodes"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    check: Mapped[str] = mapped_column(String(32), primary_key=True)
    open: Mapped[bool] = mapped_column(Boolean, nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    episodes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class TrainingJobRow(TenantOwned, Base):
    """A job (training or batch inference): its validated spec, where it is, what it did."""

    __tablename__ = "matih_training_jobs"

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # "training" or "batch": one table, one queue and one executor for both kinds.
    kind: Mapped[str] = mapped_column(
        String(16), nullable=False, default="training", server_default="training"
    )
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    spec: Mapped[dict] = mapped_column(JSON, nullable=False)
    # queued -> running -> succeeded | failed | cancelled (queued -> cancelled too).
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_by: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The executor that runs it, and its last sign of life: a job whose executor died is
    # failed by another one instead of staying "running" forever.
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    parent_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # A batch job's rows scored of the total, while it runs ({"rows_done", "rows_total"}).
    progress: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_matih_training_jobs_tenant", "tenant_id", "created_at"),
        Index("ix_matih_training_jobs_tenant_kind", "tenant_id", "kind", "created_at"),
        Index("ix_matih_training_jobs_status", "status", "created_at"),
    )


class TrainingJobLogRow(Base):
    """One line of a job's log. ``seq`` is global: writers never race for a number.

    It has no tenant column: it belongs to its job's tenant, and the tenant filter
    confines it through its job (``job_id IN`` the tenant's jobs).
    """

    __tablename__ = "matih_training_job_logs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    line: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (Index("ix_matih_training_job_logs_job", "job_id", "seq"),)


class TrainingQuotaRow(TenantOwned, Base):
    """One row per tenant: updating it serialises the tenant's submissions, so two
    concurrent submits cannot both see room under the limit."""

    __tablename__ = "matih_training_quota"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    submits: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
