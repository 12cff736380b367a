"""Registration through the lifecycle (the base of ``LifecycleService``): one path for
every door, racing registrations of one run kept to one version, and each new version
landed where ``MATIH_REGISTER_STAGE`` says, through the gates.

The REST routes, the MLflow door, the SDK, the CLI and the training runner all register
here.
"""

from __future__ import annotations

from typing import Any

from matih_ml import validation
from matih_ml.crashpoints import crash_point
from matih_ml.errors import ValidationError
from matih_ml.events.catalog import EventType
from matih_ml.events.outbox import EventLog
from matih_ml.keyed_locks import KeyedLocks
from matih_ml.registry.lifecycle_reads import LifecycleReads, TransitionResult
from matih_ml.registry.metadata import (
    STAGE_RANK,
    ModelMetadata,
    ModelVersionInfo,
    Registration,
    Stage,
)
from matih_ml.registry.provenance import Provenance
from matih_ml.registry.stages import parse_stage
from matih_ml.store import lifecycle_store as store
from matih_ml.tenancy import validate_tenant_id


class LifecycleRegistration(LifecycleReads):
    """Registering runs and model objects, and landing new versions."""

    _events: EventLog
    _provenance: Provenance | None
    # Registrations of one model in this process queue here, not on the database: on
    # SQLite the model's lock is the database's write lock, held across the whole
    # registration (download, checks, twin, signature, upload), and a waiter there gives
    # up after the busy timeout (a 503) when that runs long.
    _registering: KeyedLocks
    landing_stage: str

    def transition_stage(
        self,
        tenant_id: str,
        model_id: str,
        version: str | int,
        target_stage: str,
        *,
        actor: str = "",
        reason: str = "",
        force: bool = False,
    ) -> TransitionResult:
        """A stage move through the gates (``LifecycleService`` makes it)."""
        raise NotImplementedError

    def register_from_run(
        self, tenant_id: str, model_id: str, run_id: str, **options: Any
    ) -> ModelVersionInfo:
        """:meth:`register_run`, for callers that need only the version."""
        return self.register_run(tenant_id, model_id, run_id, **options).version

    def register_run(
        self, tenant_id: str, model_id: str, run_id: str, *, land: bool = True, **options: Any
    ) -> Registration:
        """Register a run's model, under the model's lock, so that pipelines racing to
        register the same run get one version between them, then land it (see
        ``RegistryService._create_version`` for the options).

        Args:
            land: Bring a new version to :attr:`landing_stage`.

        Returns:
            The version (as it stands after landing), and whether this call created it
            (False: the run was registered into this model before; nothing was written).
        """
        name = validation.model_name(model_id)
        validate_tenant_id(tenant_id)
        with self._registering.hold((tenant_id, name)):
            done = self._register_locked(tenant_id, name, run_id, options)
        # Only a new version lands: the same run again answers its version where it is
        # now (it may have been promoted, or archived, since).
        if land and done.created and self._land_new(tenant_id, name, done.version.version, options):
            version = self._registry.get_version(tenant_id, name, done.version.version)
            return Registration(version, done.created)
        return done

    def _register_locked(
        self, tenant_id: str, name: str, run_id: str, options: dict[str, Any]
    ) -> Registration:
        # The intent is written before the lock: on SQLite the lock is the database's
        # write lock, which a second transaction inside it would wait on forever. The
        # tenant's signing key, made on first need, likewise.
        if self._provenance is not None:
            self._provenance.keys.ensure(tenant_id)
        with self._events.pending(
            tenant_id, EventType.MODEL_REGISTERED, name, {"model": name}
        ) as p:
            crash_point("register.after_intent")
            with self._db.uow() as s:
                store.lock_model(s, tenant_id, name)
                done = self._registry.create_version_for_intent(
                    tenant_id, name, run_id, p, **options
                )
            crash_point("register.after_commit")
        return done

    def register_model(
        self,
        tenant_id: str,
        name: str,
        model: Any,
        framework: str,
        metrics: dict[str, float],
        parameters: dict[str, Any],
        tags: dict[str, str] | None = None,
        *,
        land: bool = True,
        **options: Any,
    ) -> tuple[ModelMetadata, ModelVersionInfo]:
        """Register a model object (an upload, a training job's model, the SDK's
        ``register_model``) as a new version, then land it.

        Each call makes a new version, so no lock is needed to keep one version per
        run; the files are written before the version shows.

        Returns:
            The model and the version, as they stand after landing.
        """
        md, v = self._registry.register_model_version(
            tenant_id, name, model, framework, metrics, parameters, tags, **options
        )
        if land and self._land_new(tenant_id, md.name, v.version, options):
            v = self._registry.get_version(tenant_id, md.name, v.version)
            md = self._registry.require_model(tenant_id, md.name)
        return md, v

    def _land_new(self, tenant_id: str, name: str, version: str, options: dict[str, Any]) -> bool:
        """Land a new version at :attr:`landing_stage`; False when there is nothing to do."""
        if parse_stage(self.landing_stage) is Stage.DEVELOPMENT:
            return False
        actor = str(options.get("created_by") or "")
        self.land(tenant_id, name, version, self.landing_stage, actor=actor)
        return True

    def land(
        self, tenant_id: str, model_id: str, version: str | int, stage: str, *, actor: str = ""
    ) -> ModelMetadata:
        """Bring a new version up to ``stage`` step by step, each step through its gate.

        Used for registration (``MATIH_REGISTER_STAGE``, ``--stage``); safe to repeat: a
        version already at or past ``stage`` is left where it is.

        Raises:
            ValidationError: For ``archived`` or an unknown stage.
            GateFailedError: When a gate refuses; the version stays where it got to.
        """
        target = parse_stage(stage)
        if target is Stage.ARCHIVED:
            raise ValidationError(
                "A new version cannot be registered as archived.", details={"field": "stage"}
            )
        steps = {
            Stage.DEVELOPMENT: [],
            Stage.STAGING: [Stage.STAGING],
            Stage.PRODUCTION: [Stage.STAGING, Stage.PRODUCTION],
        }[target]
        for step in steps:
            current = self.stage(tenant_id, model_id, version)
            if current is not Stage.ARCHIVED and STAGE_RANK[current] >= STAGE_RANK[step]:
                continue
            self.transition_stage(
                tenant_id,
                model_id,
                version,
                step.value,
                actor=actor,
                reason=f"registered to land in {target.value}",
            )
        return self._registry.require_model(tenant_id, validation.model_name(model_id))
