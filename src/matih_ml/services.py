"""Everything the API and the CLI need, built once from the settings."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from matih_ml.auth.api_keys import ApiKeyStore
from matih_ml.auth.jwt_tokens import JwtVerifier
from matih_ml.backend import MlflowBackend, connect
from matih_ml.config import Settings
from matih_ml.events.dispatcher import Dispatcher, DispatchPolicy
from matih_ml.events.kafka_sink import KafkaSink
from matih_ml.events.outbox import EventLog
from matih_ml.events.reconciler import Reconciler
from matih_ml.events.secret_box import SecretBox
from matih_ml.events.webhooks import WebhookStore
from matih_ml.registry.cleanup import Cleanup
from matih_ml.registry.intent_probe import MlflowIntentProbe
from matih_ml.registry.lifecycle import LifecycleService
from matih_ml.registry.policy import PolicyStore
from matih_ml.registry.projection import StageProjector
from matih_ml.registry.provenance import Provenance, SigningKeys, sign_folder
from matih_ml.registry.service import RegistryService
from matih_ml.registry.signed_files import SignedFiles
from matih_ml.runtime.loader import ModelRuntime
from matih_ml.runtime.sandbox import SandboxLimits
from matih_ml.store import migrate
from matih_ml.store.db import Database
from matih_ml.tenancy import TenantDirectory
from matih_ml.tracking.runs import RunService
from matih_ml.training.jobs import JobService

if TYPE_CHECKING:
    from matih_ml.serving.service import PredictionService
    from matih_ml.training.executor import JobRunner
    from matih_ml.training.jobs import Job

# Guards building each Services' PredictionService once (two first requests at once).
_serving_lock = threading.Lock()


@dataclass(frozen=True)
class Services:
    """The service layer, wired together."""

    settings: Settings
    backend: MlflowBackend
    db: Database
    tenants: TenantDirectory
    registry: RegistryService
    lifecycle: LifecycleService
    runs: RunService
    api_keys: ApiKeyStore
    jwt: JwtVerifier
    cleanup: Cleanup
    events: EventLog
    webhooks: WebhookStore
    dispatcher: Dispatcher
    jobs: JobService
    runtime: ModelRuntime
    projector: StageProjector
    provenance: Provenance
    signed_files: SignedFiles

    @property
    def serving(self) -> PredictionService:
        """The PredictionService over these services, built on first use (one each).

        The REST routes and the in-process doors (``matih_ml.local``) score with this
        one object: one model cache, one resolver, one set of traffic figures. The
        API's lifespan starts and stops it. Built lazily, as serving imports the
        monitoring stack, which a command that lists models does not need.
        """
        found: PredictionService | None = self.__dict__.get("_serving")
        if found is None:
            with _serving_lock:
                found = self.__dict__.get("_serving")
                if found is None:
                    from matih_ml.serving.service import PredictionService

                    found = PredictionService(self)
                    # Frozen: the fields are; this cache is not one (replace() builds anew).
                    object.__setattr__(self, "_serving", found)
        return found

    @property
    def job_runners(self) -> dict[str, JobRunner]:
        """The executor's runner of each job kind beside training: batch inference.

        Handed to every :class:`~matih_ml.training.executor.JobExecutor` built on these
        services: the executor is training's, and batch inference is a layer above it.
        Imported on use, as batch imports Ray Data.
        """
        from matih_ml.batch.runner import run_batch_job

        return {"batch": functools.partial(run_batch_job, self)}

    @property
    def job_cleanups(self) -> dict[str, Callable[[Job], None]]:
        """What the executor does for a job of a kind beside training that it fails as
        stale (its executor died mid-way): a batch job's temporary output is deleted."""
        from matih_ml.batch.runner import discard_orphaned_output

        return {"batch": functools.partial(discard_orphaned_output, self)}


def build_services(settings: Settings) -> Services:
    """Connect to MLflow and the service database, and wire the services.

    With ``MATIH_AUTO_MIGRATE`` on, pending migrations are applied first; otherwise a
    schema that is behind raises :class:`~matih_ml.store.migrate.SchemaBehindError`.
    """
    settings.ensure_local_dirs()
    db = Database(settings.database_url)
    if settings.auto_migrate:
        migrate.upgrade(settings, db)
    else:
        migrate.require_current(settings, db)
    backend = connect(settings)
    tenants = TenantDirectory(backend)
    events = EventLog(db, kafka=bool(settings.kafka_bootstrap_servers))
    runtime = ModelRuntime(
        settings.data_dir.resolve() / "serving",
        SandboxLimits(
            memory_mb=settings.sandbox_memory_mb,
            cpu_s=settings.sandbox_cpu_s,
            timeout_s=settings.sandbox_timeout_s,
        ),
        enabled=settings.sandbox != "off",
        code_policy=PolicyStore(db).allows_code,
        onnx_threads=settings.onnx_threads,
        onnx_twins=settings.onnx_twins,
    )
    box = SecretBox(settings)
    keys = SigningKeys(
        db,
        box,
        settings.signing_key_file,
        box_ready=bool(settings.secret_key) or settings.single_host,
    )
    registry = RegistryService(
        backend, tenants, events, runtime, sign=functools.partial(sign_folder, keys)
    )
    provenance = Provenance(
        keys,
        db,
        events,
        download=registry.download_version,
        tags_of=registry.version_tags,
        allow_unsigned=settings.unsigned_versions == "allow",
    )
    webhooks = WebhookStore(db, box)
    reconciler = Reconciler(
        events,
        MlflowIntentProbe(backend.client, registration_grace_s=settings.registration_grace_s),
        grace_s=settings.events_intent_grace_s,
        every_s=settings.reconcile_interval_s,
    )
    projector = StageProjector(backend.client, tenants, db)
    dispatcher = Dispatcher(
        db,
        webhooks,
        kafka=KafkaSink.from_settings(settings),
        policy=DispatchPolicy.from_settings(settings),
        reconciler=reconciler,
        chores=[(settings.projection_interval_s, projector.run_pending)],
    )
    return Services(
        settings=settings,
        backend=backend,
        db=db,
        tenants=tenants,
        registry=registry,
        lifecycle=LifecycleService(
            registry,
            db,
            projector,
            landing_stage=settings.register_stage,
            provenance=provenance,
        ),
        runs=RunService(backend, tenants, events),
        api_keys=ApiKeyStore(db),
        jwt=JwtVerifier(settings, tenant_exists=tenants.exists),
        cleanup=Cleanup(backend.client, tenants),
        events=events,
        webhooks=webhooks,
        dispatcher=dispatcher,
        jobs=JobService(db, settings, require_model=registry.require_model),
        runtime=runtime,
        projector=projector,
        provenance=provenance,
        signed_files=SignedFiles(provenance, registry.download_version_file),
    )
