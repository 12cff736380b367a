"""The model registry's logic, synchronous: what the async facade, the lifecycle and
the API call. Registration itself is in :mod:`matih_ml.registry.registration`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from matih_ml import urls, validation
from matih_ml.backend import MlflowBackend
from matih_ml.errors import ConflictError, NotFoundError, ValidationError
from matih_ml.events.catalog import EventType
from matih_ml.events.outbox import EventLog, Pending
from matih_ml.mlflow_adapter.run_reads import RunSummary, summaries
from matih_ml.mlflow_adapter.stores import sql_engine
from matih_ml.mlflow_errors import translated
from matih_ml.registry import version_files
from matih_ml.registry.cleanup import delete_files, remove_registration_run, remove_version_files
from matih_ml.registry.listing import MAX_PAGE, ModelLister, ModelPage
from matih_ml.registry.metadata import (
    TAG_ARTIFACT_URI,
    ModelMetadata,
    ModelVersionInfo,
    Registration,
    Stage,
)
from matih_ml.registry.registration import Registrar
from matih_ml.registry.stages import stage_of
from matih_ml.registry.views import (
    is_complete,
    search_runs,
    version_info,
    versions_of,
)
from matih_ml.runtime.files import UntrustedModelError, source_inside
from matih_ml.runtime.loader import ModelRuntime, example_predictions
from matih_ml.tenancy import TenantDirectory, validate_tenant_id
from matih_ml.tracking.metrics import log_metrics


def registered_event(v: ModelVersionInfo, created_by: str | None) -> dict[str, Any]:
    """The data of ``MODEL_REGISTERED`` for a new version."""
    return {
        "model": v.model_id,
        "version": v.version,
        "framework": v.framework,
        "run_id": v.run_id,
        # The API address of its files: events leave the service, server paths must not.
        "artifact_uri": urls.version_files(v.model_id, v.version),
        "created_by": created_by or "",
    }


_MAX_COMPARE = 1000
_CARD_MAX = 1_000_000  # bytes of a model card returned


class RegistryService:
    """Tenant-scoped model registry on MLflow (synchronous).

    Args:
        backend: The MLflow backend.
        tenants: The tenant directory (resolves and provisions tenants).
    """

    def __init__(
        self,
        backend: MlflowBackend,
        tenants: TenantDirectory,
        events: EventLog,
        runtime: ModelRuntime,
        *,
        sign: Callable[[str, Path], dict[str, str]] | None = None,
    ) -> None:
        self._backend = backend
        self._client = backend.client
        self._tenants = tenants
        self._runtime = runtime
        self._registrar = Registrar(self._client, tenants, runtime, sign=sign)
        self._lister = ModelLister(self._client, tenants)
        self.events = events

    # ----------------------------------------------------------------- registration

    def register_model(
        self,
        tenant_id: str,
        name: str,
        model: Any,
        framework: str,
        metrics: dict[str, float],
        parameters: dict[str, Any],
        tags: dict[str, str] | None = None,
        **options: Any,
    ) -> ModelMetadata:
        """Register a new model, or a new version of an existing one (the specification's call).

        The model is logged into a run of the tenant's experiment ``models/<name>``
        with its metrics and parameters, then registered as a new version in
        ``development``. Everything is validated before anything is written. See
        :meth:`register_model_version` for the arguments.

        Returns:
            The model's metadata.
        """
        return self.register_model_version(
            tenant_id, name, model, framework, metrics, parameters, tags, **options
        )[0]

    def register_model_version(
        self, tenant_id: str, name: str, model: Any, framework: str, *args: Any, **kwargs: Any
    ) -> tuple[ModelMetadata, ModelVersionInfo]:
        """Register a model object; return the model and the new version.

        Publishes ``MODEL_REGISTERED``. See :meth:`Registrar.register_model_version`
        for the arguments.
        """
        tenant_id = validate_tenant_id(tenant_id)
        clean = validation.model_name(name)
        with self.events.pending(
            tenant_id, EventType.MODEL_REGISTERED, clean, {"model": clean}
        ) as p:
            md, v = self._registrar.register_model_version(
                tenant_id, clean, model, framework, *args, intent_id=p.id, **kwargs
            )
            p.data.update(registered_event(v, kwargs.get("created_by")))
        return md, v

    def _create_version(
        self, tenant_id: str, model_id: str, run_id: str, **options: Any
    ) -> ModelVersionInfo:
        """Register a run's model as a new version (the same run again: the same version),
        without the model's lock or the landing: callers register through
        ``LifecycleService.register_run``, which has both.

        Publishes ``MODEL_REGISTERED`` for a new version. See
        :meth:`Registrar.create_version` for the options.
        """
        tenant_id = validate_tenant_id(tenant_id)
        name = validation.model_name(model_id)
        with self.events.pending(tenant_id, EventType.MODEL_REGISTERED, name, {"model": name}) as p:
            done = self.create_version_for_intent(tenant_id, name, run_id, p, **options)
        return done.version

    def create_version_for_intent(
        self, tenant_id: str, model_id: str, run_id: str, pending: Pending, **options: Any
    ) -> Registration:
        """:meth:`_create_version` carrying out an intent the caller recorded (and confirms).

        The caller holds a lock across this (the lifecycle does), so the intent had
        to be written before it.

        Returns:
            The version, and whether this call created it (the API answers 201 or 200).
        """
        v, created = self._registrar.create_version(
            tenant_id, model_id, run_id, intent_id=pending.id, **options
        )
        if created:
            pending.data.update(registered_event(v, options.get("created_by")))
        else:
            pending.cancel()
        return Registration(v, created)

    # ----------------------------------------------------------------------- reads

    def get_model(self, tenant_id: str, model_id: str) -> ModelMetadata | None:
        """Return a model's metadata, or None if the tenant has no such model.

        The same as its item in :meth:`list_models`, read the same way (on the SQL
        stores, a few queries of our own: see :meth:`ModelLister.get`).

        Raises:
            NotFoundError: For an unknown tenant.
            ValidationError: For a bad model name.
        """
        return self._lister.get(tenant_id, validation.model_name(model_id))

    def require_model(self, tenant_id: str, model_id: str) -> ModelMetadata:
        """Like :meth:`get_model`, but an unknown model raises ``NotFoundError``."""
        found = self.get_model(tenant_id, model_id)
        if found is None:
            raise NotFoundError(f"Model {model_id!r} not found.", details={"model_id": model_id})
        return found

    def list_models(
        self, tenant_id: str, stage: str | None = None, framework: str | None = None
    ) -> list[ModelMetadata]:
        """Return every model of the tenant, filtered.

        Args:
            tenant_id: The tenant.
            stage: Keep models that have a version in this stage.
            framework: Keep models of this framework.
        """
        items: list[ModelMetadata] = []
        token: str | None = None
        while True:
            page = self.list_models_page(
                tenant_id, stage=stage, framework=framework, max_results=MAX_PAGE, page_token=token
            )
            items.extend(page.items)
            token = page.next_page_token
            if not token:
                return items

    def list_models_page(
        self,
        tenant_id: str,
        *,
        stage: str | None = None,
        framework: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
        q: str | None = None,
        tag: str | None = None,
    ) -> ModelPage:
        """One page of the tenant's models, ordered by name (see :meth:`ModelLister.page`)."""
        return self._lister.page(
            tenant_id,
            stage=stage,
            framework=framework,
            max_results=max_results,
            page_token=page_token,
            q=q,
            tag=tag,
        )

    def get_version(self, tenant_id: str, model_id: str, version: str | int) -> ModelVersionInfo:
        """Return one version of a model.

        Raises:
            NotFoundError: If the model or the version does not exist in this tenant.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        with self._tenants.scope(tenant_id) as tenant:
            return version_info(tenant, self._get_version(name, number))

    def list_versions(self, tenant_id: str, model_id: str) -> list[ModelVersionInfo]:
        """Return every version of a model, newest first."""
        name = validation.model_name(model_id)
        with self._tenants.scope(tenant_id) as tenant:
            rm = self._get_registered(name)
            infos = [version_info(tenant, mv) for mv in versions_of(self._client, [name])]
        # MLflow's version search leaves aliases out; the model holds them all.
        by_version: dict[str, list[str]] = {}
        for alias, number in (rm.aliases or {}).items():
            by_version.setdefault(str(number), []).append(alias)
        for info in infos:
            info.aliases = sorted(by_version.get(info.version, []))
        return infos

    # --------------------------------------------------------------------- changes

    def stage_of(self, tenant_id: str, model_id: str, version: str) -> Stage:
        """The stage MLflow's mirror shows for a version (the lifecycle's fallback)."""
        with self._tenants.scope(tenant_id):
            return stage_of(self._get_version(model_id, version))

    def version_metrics(self, tenant_id: str, model_id: str, version: str) -> dict[str, float]:
        """The metrics of the run that produced a version ({} if it has no run)."""
        with self._tenants.scope(tenant_id):
            mv = self._get_version(model_id, version)
            if not mv.run_id:
                return {}
            with translated(f"run {mv.run_id!r}"):
                return dict(self._client.get_run(mv.run_id).data.metrics)

    def download_version(
        self, tenant_id: str, model_id: str, version: str | int, dest: Path
    ) -> Path:
        """Copy a version's files (the registry's own copy) into the folder ``dest``.

        Raises:
            NotFoundError: If the model or the version does not exist in this tenant.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        with self._tenants.scope(tenant_id):
            mv = self._get_version(name, number)
            uri = (mv.tags or {}).get(TAG_ARTIFACT_URI) or mv.source
            source_inside(uri, self._tenants.tenant_artifact_root(tenant_id))
            dest.mkdir(parents=True, exist_ok=True)
            with translated(f"artifacts of {name!r} v{number}"):
                get_artifact_repository(uri).download_artifacts("", str(dest))
        return dest

    def version_tags(self, tenant_id: str, model_id: str, version: str | int) -> dict[str, str]:
        """All of a version's tags, the service's own (``matih.*``) included.

        Raises:
            NotFoundError: If the model or the version does not exist in this tenant.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        with self._tenants.scope(tenant_id):
            return dict(self._get_version(name, number).tags or {})

    def list_version_files(
        self, tenant_id: str, model_id: str, version: str | int, path: str | None = None
    ) -> list[Any]:
        """The files and folders at ``path`` in a version's own copy of its files.

        Raises:
            NotFoundError: If the model, the version or the folder is not this tenant's.
        """
        name, number, rel = self._file_args(model_id, version, path)
        with self._tenants.scope(tenant_id):
            uri = self._files_uri(name, number)
            return version_files.list_files(uri, rel, f"Files of {name!r} v{number}")

    def download_version_file(
        self, tenant_id: str, model_id: str, version: str | int, path: str, dest: Path
    ) -> Path:
        """Copy one file of a version's own copy into the folder ``dest``.

        Raises:
            NotFoundError: If the model, the version or the file is not this tenant's.
            ValidationError: For a bad path, or a folder.
        """
        name, number, rel = self._file_args(model_id, version, path)
        if not rel:
            raise ValidationError("A file path is required.", details={"field": "path"})
        with self._tenants.scope(tenant_id):
            uri = self._files_uri(name, number)
            return version_files.download_file(uri, rel, dest, f"Files of {name!r} v{number}")

    @staticmethod
    def _file_args(
        model_id: str, version: str | int, path: str | None
    ) -> tuple[str, str, str | None]:
        return (
            validation.model_name(model_id),
            validation.version(version),
            validation.artifact_path(path),
        )

    def _files_uri(self, name: str, number: str) -> str:
        mv = self._get_version(name, number)
        return (mv.tags or {}).get(TAG_ARTIFACT_URI) or mv.source

    def model_card(self, tenant_id: str, model_id: str, version: str | int) -> str | None:
        """The version's ``model_card.md``, from the registry's own copy of its files
        (the training run does not hold it); None if it has none.

        Raises:
            NotFoundError: If the model or the version does not exist in this tenant.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        with tempfile.TemporaryDirectory() as tmp, self._tenants.scope(tenant_id):
            mv = self._get_version(name, number)
            uri = (mv.tags or {}).get(TAG_ARTIFACT_URI)
            if not uri:
                return None
            try:
                with translated(f"model card of {name!r} v{number}"):
                    local = Path(
                        get_artifact_repository(uri).download_artifacts("model_card.md", tmp)
                    )
            except (NotFoundError, OSError, ValueError):
                return None
            if not local.is_file():
                return None
            with local.open("rb") as f:
                return f.read(_CARD_MAX).decode("utf-8", errors="replace")

    def prediction_check(
        self, tenant_id: str, model_id: str, version: str, *, require_example: bool
    ) -> list[str]:
        """Load a version (in process, or in the sandbox if it carries code) and
        predict on its stored input example.

        Returns:
            The reasons it fails (empty when it passes).
        """
        with self._tenants.scope(tenant_id) as tenant:
            mv = self._get_version(model_id, version)
            uri = (mv.tags or {}).get(TAG_ARTIFACT_URI) or mv.source
            try:
                source_inside(uri, self._tenants.tenant_artifact_root(tenant))
                with tempfile.TemporaryDirectory(prefix="matih-check-") as tmp:
                    local = Path(get_artifact_repository(uri).download_artifacts("", tmp))
                    with self._runtime.open(tenant, model_id, local) as model:
                        scored = example_predictions(model, local)
                    if scored is None:
                        return (
                            ["no input example is stored with the model to predict on"]
                            if require_example
                            else []
                        )
            except UntrustedModelError as exc:
                return [f"the model's files are refused: {exc.message}"[:500]]
            except Exception as exc:  # noqa: BLE001 - any failure is the gate's reason
                return [f"the model does not load and predict: {type(exc).__name__}: {exc}"[:500]]
        return []

    def delete_model(self, tenant_id: str, model_id: str) -> None:
        """Delete a model, its versions and the registry's copies of their files.

        Callers that may race stage moves use ``LifecycleService.delete_model``, which
        takes the model's lock around this.

        Raises:
            NotFoundError: For an unknown model.
            ConflictError: If a version of it is in production.
        """
        name = validation.model_name(model_id)
        with self._tenants.scope(tenant_id) as tenant:
            self._get_registered(name)
            versions = versions_of(self._client, [name], include_pending=True)
            serving = [mv.version for mv in versions if stage_of(mv) is Stage.PRODUCTION]
            if serving:
                raise ConflictError(
                    f"Model {name!r} has version {serving[0]} in production; move it out of "
                    "production (or roll back) before deleting the model.",
                    details={"model_id": name, "version": str(serving[0])},
                )
            with translated(f"model {name!r}"):
                self._client.delete_registered_model(name)
            delete_files(f"{self._tenants.tenant_artifact_root(tenant)}/models/{name}")
            for mv in versions:
                remove_registration_run(self._client, mv.run_id)

    def delete_version(self, tenant_id: str, model_id: str, version: str | int) -> None:
        """Delete a development, staging or archived version and its registry files.

        Callers that may race stage moves use ``LifecycleService.delete_version``.

        Raises:
            NotFoundError: For an unknown model or version.
            ConflictError: If the version is in production.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        with self._tenants.scope(tenant_id):
            mv = self._get_version(name, number)
            if stage_of(mv) is Stage.PRODUCTION:
                raise ConflictError(
                    f"Version {number} of {name!r} is in production and cannot be deleted; "
                    "promote or roll back to another version first.",
                    details={"model_id": name, "version": number},
                )
            with translated(f"model {name!r} version {number}"):
                self._client.delete_model_version(name, number)
            remove_version_files(self._client, mv)

    # -------------------------------------------------------------------- tracking

    def log_training_metrics(
        self, tenant_id: str, run_id: str, step: int, metrics: dict[str, float]
    ) -> None:
        """Log a step's training metrics to a run, in one batch.

        Raises:
            ValidationError: For a bad key, value or step (nothing is written).
            NotFoundError: If the run is not in this tenant.
        """
        run_id = validation.run_id(run_id)
        with self._tenants.scope(tenant_id):
            log_metrics(self._client, run_id, metrics, step)

    def compare_runs(
        self,
        tenant_id: str,
        run_ids: list[str],
        metrics: list[str],
        *,
        only_differences: bool = False,
    ) -> list[dict[str, Any]]:
        """Compare runs side by side: three SQL queries for all of them on the SQL
        stores, one search call through a remote MLflow server.

        Args:
            tenant_id: The tenant.
            run_ids: The runs, in the order the result keeps.
            metrics: The metric keys to show (missing ones are None).
            only_differences: Show only the parameters whose values differ between the
                runs (a parameter one run lacks counts as differing).

        Returns:
            One ``{"run_id", "run_name", "status", "parameters", "metrics"}`` per run.

        Raises:
            NotFoundError: If any run is not in this tenant (naming them).
        """
        ids = [validation.run_id(r) for r in run_ids]
        keys = [validation.key(m, "metric key") for m in metrics]
        if len(ids) > _MAX_COMPARE:
            raise ValidationError(
                f"At most {_MAX_COMPARE} runs can be compared at once.",
                details={"field": "run_ids"},
            )
        with self._tenants.scope(tenant_id) as tenant:
            runs = self._run_summaries(tenant, ids, keys)
        missing = [r for r in ids if r not in runs]
        if missing:
            raise NotFoundError(
                f"Run(s) not found: {', '.join(missing)}.", details={"run_ids": missing}
            )
        params = {rid: dict(runs[rid].params) for rid in ids}
        if only_differences:
            names = {k for p in params.values() for k in p}
            same = {k for k in names if len({p.get(k) for p in params.values()}) == 1}
            params = {
                rid: {k: v for k, v in p.items() if k not in same} for rid, p in params.items()
            }
        return [
            {
                "run_id": rid,
                "run_name": runs[rid].run_name,
                "status": runs[rid].status,
                "parameters": params[rid],
                "metrics": {m: runs[rid].metrics.get(m) for m in keys},
            }
            for rid in ids
        ]

    def _run_summaries(self, tenant: str, ids: list[str], keys: list[str]) -> dict[str, RunSummary]:
        engine = sql_engine(self._client)
        if engine is not None:
            return summaries(engine, tenant, ids, keys)
        return {
            r.info.run_id: RunSummary(
                r.info.run_id,
                r.info.run_name,
                r.info.status,
                dict(r.data.params),
                dict(r.data.metrics),
            )
            for r in search_runs(self._client, ids)
        }

    # -------------------------------------------------------------------- helpers

    def _get_registered(self, name: str) -> RegisteredModel:
        with translated(f"Model {name!r}"):
            return self._client.get_registered_model(name)

    def _get_version(self, name: str, number: str) -> ModelVersion:
        self._get_registered(name)
        with translated(f"Version {number} of model {name!r}"):
            mv = self._client.get_model_version(name, number)
        if not is_complete(mv):
            raise NotFoundError(
                f"Version {number} of model {name!r} not found.",
                details={"model_id": name, "version": number},
            )
        return mv
