"""Settings, read from the environment once, and passed in from there on.

With nothing set, the embedded default applies: SQLite and a local artifact
folder under ``MATIH_DATA_DIR``, created on first use, no server needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The service's configuration.

    Environment variables (all optional):
        MLFLOW_TRACKING_URI: MLflow backend (``sqlite:///...``, ``postgresql+psycopg://...``,
            ``http://mlflow:5000``). Default: SQLite under the data dir.
        MLFLOW_ARTIFACT_ROOT: where artifacts go. Default: ``<data dir>/artifacts``.
        MLFLOW_REGISTRY_URI: the model registry backend. Default: the tracking URI.
        MATIH_DATA_DIR: the embedded default's home. Default: ``./.matih``.
        MATIH_AUTO_CREATE_TENANTS: provision a tenant on first use. Default: on for the
            embedded default, off otherwise.
        MATIH_AUTO_MIGRATE: apply schema migrations at start. Default: on when no store
            is a database server (SQLite only); otherwise off, and a start on an old
            schema refuses to serve.
        MATIH_REGISTRATION_GRACE_S: how old a half-finished registration must be before
            start-up or ``matih-ml gc`` removes it. Default: 900.
        See docs/deploy.md for the rest (database, JWT, limits).
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    tracking_uri_env: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "tracking_uri")
    )
    artifact_root_env: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_ARTIFACT_ROOT", "artifact_root")
    )
    registry_uri_env: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_REGISTRY_URI", "registry_uri")
    )
    data_dir: Path = Field(
        default=Path(".matih"), validation_alias=AliasChoices("MATIH_DATA_DIR", "data_dir")
    )
    auto_create_tenants_env: bool | None = Field(
        default=None,
        validation_alias=AliasChoices("MATIH_AUTO_CREATE_TENANTS", "auto_create_tenants"),
    )

    auto_migrate_env: bool | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_AUTO_MIGRATE", "auto_migrate")
    )
    registration_grace_s: float = Field(
        default=15 * 60,
        ge=0,
        validation_alias=AliasChoices("MATIH_REGISTRATION_GRACE_S", "registration_grace_s"),
    )
    database_url_env: str | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_DATABASE_URL", "database_url")
    )
    jwt_secret: str | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_JWT_SECRET", "jwt_secret")
    )
    jwt_public_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("MATIH_JWT_PUBLIC_KEY_FILE", "jwt_public_key_file"),
    )
    jwt_jwks_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_JWT_JWKS_FILE", "jwt_jwks_file")
    )
    jwt_audience: str | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_JWT_AUDIENCE", "jwt_audience")
    )
    jwt_issuer: str | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_JWT_ISSUER", "jwt_issuer")
    )
    jwt_tenant_claim: str = Field(
        default="tenant_id",
        validation_alias=AliasChoices("MATIH_JWT_TENANT_CLAIM", "jwt_tenant_claim"),
    )
    max_upload_bytes: int = Field(
        default=200 * 1024 * 1024,
        validation_alias=AliasChoices("MATIH_MAX_UPLOAD_BYTES", "max_upload_bytes"),
    )
    register_stage: str = Field(
        default="development",
        validation_alias=AliasChoices("MATIH_REGISTER_STAGE", "register_stage"),
    )
    bootstrap_tenant: str | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_BOOTSTRAP_TENANT", "bootstrap_tenant")
    )

    secret_key: str | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_SECRET_KEY", "secret_key")
    )
    # Model signing (docs/provenance.md): an operator's EC private key (PEM) that signs
    # every tenant's versions instead of the per-tenant keys the service keeps.
    signing_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("MATIH_SIGNING_KEY_FILE", "signing_key_file"),
    )
    # Whether a version with no signature (registered before signing) may be promoted.
    unsigned_versions: Literal["allow", "refuse"] = Field(
        default="allow",
        validation_alias=AliasChoices("MATIH_UNSIGNED_VERSIONS", "unsigned_versions"),
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MATIH_KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    kafka_topic: str = Field(
        default="matih.ml.events",
        validation_alias=AliasChoices("MATIH_KAFKA_TOPIC", "kafka_topic"),
    )
    dispatcher: bool = Field(
        default=True, validation_alias=AliasChoices("MATIH_DISPATCHER", "dispatcher")
    )
    events_max_attempts: int = Field(
        default=8,
        ge=1,
        validation_alias=AliasChoices("MATIH_EVENTS_MAX_ATTEMPTS", "events_max_attempts"),
    )
    events_backoff_s: float = Field(
        default=1.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_EVENTS_BACKOFF_S", "events_backoff_s"),
    )
    events_backoff_max_s: float = Field(
        default=300.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_EVENTS_BACKOFF_MAX_S", "events_backoff_max_s"),
    )
    events_poll_s: float = Field(
        default=0.5, gt=0, validation_alias=AliasChoices("MATIH_EVENTS_POLL_S", "events_poll_s")
    )
    events_intent_grace_s: float = Field(
        default=60.0,
        ge=0,
        validation_alias=AliasChoices("MATIH_EVENTS_INTENT_GRACE_S", "events_intent_grace_s"),
    )
    reconcile_interval_s: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_RECONCILE_INTERVAL_S", "reconcile_interval_s"),
    )
    # MLflow's stage field and aliases are written after our commit; a projection that
    # failed (MLflow or the database down, a crash) is retried this often.
    projection_interval_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_PROJECTION_INTERVAL_S", "projection_interval_s"),
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_WEBHOOK_TIMEOUT_S", "webhook_timeout_s"),
    )

    serving_cache_size: int = Field(
        default=16,
        ge=1,
        validation_alias=AliasChoices("MATIH_SERVING_CACHE_SIZE", "serving_cache_size"),
    )
    # Code-bearing models (pickle, PythonModel, loader_module) run only in a bubblewrap
    # sandbox per tenant; "off" refuses them instead (never loads them in the service).
    sandbox: Literal["bwrap", "off"] = Field(
        default="bwrap", validation_alias=AliasChoices("MATIH_SANDBOX", "sandbox")
    )
    sandbox_memory_mb: int = Field(
        default=4096,
        ge=256,
        validation_alias=AliasChoices("MATIH_SANDBOX_MEMORY_MB", "sandbox_memory_mb"),
    )
    sandbox_cpu_s: int = Field(
        default=600,
        ge=1,
        validation_alias=AliasChoices("MATIH_SANDBOX_CPU_S", "sandbox_cpu_s"),
    )
    sandbox_timeout_s: float = Field(
        default=60.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_SANDBOX_TIMEOUT_S", "sandbox_timeout_s"),
    )
    # Intra-op threads of each ONNX Runtime session (one per served ONNX version or twin):
    # one, because requests run side by side in the thread pool and a one-record graph
    # is too small to split (docs/decisions.md, "ONNX Runtime sessions").
    onnx_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias=AliasChoices("MATIH_ONNX_THREADS", "onnx_threads"),
    )
    # An sklearn classifier gets an ONNX twin at registration, served when it answers the
    # input example as the estimator does (docs/serving.md); off keeps every sklearn
    # version on its pyfunc.
    onnx_twins: bool = Field(
        default=True, validation_alias=AliasChoices("MATIH_ONNX_TWINS", "onnx_twins")
    )
    serving_check_s: float = Field(
        default=0.25,
        gt=0,
        validation_alias=AliasChoices("MATIH_SERVING_CHECK_S", "serving_check_s"),
    )
    monitor_window: int = Field(
        default=2000,
        ge=10,
        validation_alias=AliasChoices("MATIH_MONITOR_WINDOW", "monitor_window"),
    )
    monitor_interval_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_MONITOR_INTERVAL_S", "monitor_interval_s"),
    )
    latency_sla_ms: float = Field(
        default=50.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_LATENCY_SLA_MS", "latency_sla_ms"),
    )
    metrics_token: str | None = Field(
        default=None, validation_alias=AliasChoices("MATIH_METRICS_TOKEN", "metrics_token")
    )
    training_data_root_env: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MATIH_TRAINING_DATA_ROOT", "training_data_root"),
    )
    training_max_jobs: int = Field(
        default=2,
        ge=1,
        validation_alias=AliasChoices("MATIH_TRAINING_MAX_JOBS", "training_max_jobs"),
    )
    training_workers: int = Field(
        default=1,
        ge=0,
        validation_alias=AliasChoices("MATIH_TRAINING_WORKERS", "training_workers"),
    )
    training_stale_s: float = Field(
        default=120,
        gt=0,
        validation_alias=AliasChoices("MATIH_TRAINING_STALE_S", "training_stale_s"),
    )
    training_entry_points_env: str = Field(
        default="",
        validation_alias=AliasChoices("MATIH_TRAINING_ENTRY_POINTS", "training_entry_points"),
    )
    feast_repos: dict[str, str] = Field(
        default={}, validation_alias=AliasChoices("MATIH_FEAST_REPOS", "feast_repos")
    )
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("RAY_ADDRESS", "ray_address")
    )
    # Per-tenant limits (docs/api.md, "Limits"; 0 turns one off). Rates are the tenant's
    # total over the service: each replica enforces its share, the rate over
    # MATIH_LIMIT_REPLICAS (docs/decisions.md, "Per-tenant limits").
    limit_requests_per_s: float = Field(
        default=2000,
        ge=0,
        validation_alias=AliasChoices("MATIH_LIMIT_REQUESTS_PER_S", "limit_requests_per_s"),
    )
    # A tenant may spend this many seconds of its request rate at once (a token bucket's
    # size), then waits for it to refill.
    limit_burst_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        validation_alias=AliasChoices("MATIH_LIMIT_BURST_S", "limit_burst_s"),
    )
    limit_points_per_s: float = Field(
        default=10_000,
        ge=0,
        validation_alias=AliasChoices("MATIH_LIMIT_POINTS_PER_S", "limit_points_per_s"),
    )
    # The points a tenant may write at once before its rate holds it (by default a history
    # import of 300,000 points, a request of the most a request takes and more, goes through).
    limit_points_burst: int = Field(
        default=300_000,
        ge=0,
        validation_alias=AliasChoices("MATIH_LIMIT_POINTS_BURST", "limit_points_burst"),
    )
    limit_concurrent_uploads: int = Field(
        default=16,
        ge=0,
        validation_alias=AliasChoices("MATIH_LIMIT_CONCURRENT_UPLOADS", "limit_concurrent_uploads"),
    )
    limit_storage_bytes: int = Field(
        default=100 * 1024**3,
        ge=0,
        validation_alias=AliasChoices("MATIH_LIMIT_STORAGE_BYTES", "limit_storage_bytes"),
    )
    limit_replicas: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("MATIH_LIMIT_REPLICAS", "limit_replicas"),
    )
    # A tenant's stored bytes are measured by listing its artifact prefix at most this
    # often; uploads accepted in between are added to the last figure.
    limit_storage_refresh_s: float = Field(
        default=60.0,
        gt=0,
        validation_alias=AliasChoices("MATIH_LIMIT_STORAGE_REFRESH_S", "limit_storage_refresh_s"),
    )

    @property
    def training_data_root(self) -> str:
        """The root of every tenant's training data (a folder, or an ``s3://`` prefix)."""
        if self.training_data_root_env:
            return self.training_data_root_env.rstrip("/")
        return str((self.data_dir / "training-data").resolve())

    def tenant_data_root(self, tenant_id: str) -> str:
        """A tenant's training data: job tables and entity files are read under it only."""
        return f"{self.training_data_root}/{tenant_id}"

    def feast_repo(self, tenant_id: str) -> str:
        """The Feast repo a tenant's jobs read: ``MATIH_FEAST_REPOS`` names it, else
        ``<data dir>/feast/<tenant>``. Never under the tenant's data root: a repo's
        ``feature_store.yaml`` names classes to import and files to read, so the
        operator writes it, not the tenant."""
        if tenant_id in self.feast_repos:
            return self.feast_repos[tenant_id]
        return str((self.data_dir / "feast" / tenant_id).resolve())

    @property
    def training_entry_points(self) -> frozenset[str]:
        """The ``module:function`` trainers the operator allows (comma-separated)."""
        return frozenset(p.strip() for p in self.training_entry_points_env.split(",") if p.strip())

    @property
    def database_url(self) -> str:
        """The service tables' database: ``MATIH_DATABASE_URL``, else MLflow's SQL store."""
        if self.database_url_env:
            return self.database_url_env
        # SQLite locks the whole file for a write: the lifecycle's per-model lock would
        # then block MLflow's own writes, so on SQLite the service's tables get a file
        # of their own.
        if self.tracking_uri.startswith(("postgresql", "mysql")):
            return self.tracking_uri
        return f"sqlite:///{(self.data_dir / 'matih.db').resolve()}"

    @property
    def embedded(self) -> bool:
        """True when no tracking URI is configured and the embedded SQLite store is used."""
        return not self.tracking_uri_env

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force."""
        if self.tracking_uri_env:
            return self.tracking_uri_env
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def registry_uri(self) -> str:
        """The MLflow registry URI in force (the tracking URI unless set)."""
        return self.registry_uri_env or self.tracking_uri

    @property
    def artifact_root(self) -> str:
        """The root under which every tenant gets its own artifact prefix."""
        if self.artifact_root_env:
            return self.artifact_root_env.rstrip("/")
        return str((self.data_dir / "artifacts").resolve())

    @property
    def auto_migrate(self) -> bool:
        """Whether a start applies pending migrations (else it checks, and refuses)."""
        if self.auto_migrate_env is not None:
            return self.auto_migrate_env
        # SQLite files have one host and no migration job: they migrate themselves. A
        # shared database server is migrated by `matih-ml db upgrade` before a rollout.
        return self.single_host

    @property
    def single_host(self) -> bool:
        """True when no store is a database server (SQLite only): one host, no replicas."""
        uris = (self.tracking_uri, self.registry_uri, self.database_url)
        return not any(u.startswith(("postgresql", "mysql", "mssql")) for u in uris)

    @property
    def auto_create_tenants(self) -> bool:
        """Whether an unknown tenant is provisioned on first use."""
        if self.auto_create_tenants_env is not None:
            return self.auto_create_tenants_env
        return self.embedded

    def ensure_local_dirs(self) -> None:
        """Create the embedded default's folders (a no-op for remote backends)."""
        if self.embedded:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        if "://" not in self.artifact_root or self.artifact_root.startswith("file://"):
            Path(self.artifact_root.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
