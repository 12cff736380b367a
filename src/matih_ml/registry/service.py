"""The model registry's logic, synchronous: what the async facade and the API call.

Layout of a version's files (the specification's artifact table), under the
tenant's own prefix::

    <artifact root>/<tenant>/models/<name>/<version>/   MLmodel, model file, requirements.txt,
                                                         model_card.md

The copy under ``models/`` is written once the version number is known, so the
registry's files stay whole and immutable even if the training run is deleted
(as Unity Catalog and SageMaker copy into registry storage). MLflow's own
``models:/NAME/N`` resolves to the run's copy, which holds the same model files.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities import Param, Run, RunStatus
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from matih_ml import validation
from matih_ml.backend import MlflowBackend
from matih_ml.errors import ConflictError, NotFoundError, ValidationError
from matih_ml.mlflow_errors import translated
from matih_ml.registry import frameworks, queries
from matih_ml.registry.metadata import (
    MLFLOW_STAGE,
    STAGE_ALIAS,
    STAGE_RANK,
    TAG_ARTIFACT_URI,
    TAG_CREATED_BY,
    TAG_FRAMEWORK,
    TAG_MODEL_TYPE,
    TAG_STAGE,
    TAG_TENANT,
    Framework,
    ModelMetadata,
    ModelVersionInfo,
    Stage,
)
from matih_ml.registry.model_card import render_model_card
from matih_ml.tenancy import TenantDirectory
from matih_ml.tracking.experiments import all_experiment_ids, get_or_create_experiment
from matih_ml.tracking.metrics import log_metrics

# The basic moves; "any stage back to development" is added in allowed_targets().
_FORWARD = {
    Stage.DEVELOPMENT: {Stage.STAGING},
    Stage.STAGING: {Stage.PRODUCTION},
    Stage.PRODUCTION: {Stage.ARCHIVED},
    Stage.ARCHIVED: set(),
}
_MLFLOW_TO_STAGE = {v: k for k, v in MLFLOW_STAGE.items()}
_MAX_PAGE = 1000
_MAX_COMPARE = 1000


def allowed_targets(current: Stage) -> set[Stage]:
    """The stages a version in ``current`` may move to."""
    targets = set(_FORWARD[current])
    if current is not Stage.DEVELOPMENT:
        targets.add(Stage.DEVELOPMENT)
    return targets


def parse_stage(value: Any) -> Stage:
    """Return the :class:`Stage` named by ``value`` (case-insensitive).

    Raises:
        ValidationError: If it names no stage.
    """
    try:
        return Stage(str(value).lower())
    except ValueError:
        allowed = ", ".join(s.value for s in Stage)
        raise ValidationError(
            f"stage {value!r} is not one of: {allowed}.", details={"field": "stage"}
        ) from None


def _ts(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(("matih.", "mlflow."))}


def _stage_of(mv: ModelVersion) -> Stage:
    tag = (mv.tags or {}).get(TAG_STAGE)
    if tag in Stage._value2member_map_:
        return Stage(tag)
    return _MLFLOW_TO_STAGE.get(mv.current_stage, Stage.DEVELOPMENT)


@dataclass(frozen=True)
class _Page:
    items: list[ModelMetadata]
    next_page_token: str | None


class RegistryService:
    """Tenant-scoped model registry on MLflow (synchronous).

    Args:
        backend: The MLflow backend.
        tenants: The tenant directory (resolves and provisions tenants).
    """

    def __init__(self, backend: MlflowBackend, tenants: TenantDirectory) -> None:
        self._backend = backend
        self._client = backend.client
        self._tenants = tenants

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
        self,
        tenant_id: str,
        name: str,
        model: Any,
        framework: str,
        metrics: dict[str, float],
        parameters: dict[str, Any],
        tags: dict[str, str] | None = None,
        *,
        description: str = "",
        model_type: str | None = None,
        created_by: str | None = None,
        input_example: Any | None = None,
    ) -> tuple[ModelMetadata, ModelVersionInfo]:
        """Register a new model or version; return the model and the version created.

        The model is logged into a run of the tenant's experiment ``models/<name>``
        with its metrics and parameters, then registered as a new version in
        ``development``. Everything is validated before anything is written.

        Args:
            tenant_id: The tenant.
            name: The model's name within the tenant.
            model: An sklearn estimator, a ``torch.nn.Module`` or an ``onnx.ModelProto``.
            framework: ``sklearn``, ``pytorch`` or ``onnx``.
            metrics: Evaluation metrics of this version.
            parameters: Training parameters (stored as strings).
            tags: User tags for the model and the version.
            description: The version's description.
            model_type: classification, regression, clustering (inferred for sklearn).
            created_by: Who registered it.
            input_example: A sample input, stored with the model (and its signature).

        Returns:
            The model's metadata (its ``current_version`` is the new one unless a more
            advanced version exists), and the new version.

        Raises:
            ValidationError: For bad input (nothing is written).
            NotFoundError: For an unknown tenant when tenants are not auto-created.
        """
        name = validation.model_name(name)
        fw = frameworks.parse_framework(framework)
        frameworks.require_installed(fw)
        frameworks.check_model(fw, model)
        clean_metrics = validation.metrics(metrics)
        clean_params = validation.params(parameters)
        clean_tags = validation.tags(tags)
        kind = model_type or frameworks.infer_model_type(fw, model)
        with tempfile.TemporaryDirectory(prefix="matih-model-") as tmp:
            local = Path(tmp) / "model"
            reqs = frameworks.save_model(fw, model, local, input_example)
            with self._tenants.scope(tenant_id, create=True) as tenant:
                run = self._log_registration_run(
                    tenant, name, fw, local, clean_metrics, clean_params, clean_tags, created_by
                )
                mv = self._new_version(
                    tenant,
                    name,
                    run,
                    source=f"{run.info.artifact_uri}/model",
                    local_model=local,
                    framework=fw,
                    model_type=kind,
                    description=description,
                    created_by=created_by or "",
                    requirements=reqs,
                    tags=clean_tags,
                )
                return (
                    self._metadata(tenant, self._get_registered(mv.name)),
                    self._version_info(tenant, mv),
                )

    def _log_registration_run(
        self,
        tenant: str,
        name: str,
        fw: Framework,
        local: Path,
        metrics: dict[str, float],
        params: dict[str, str],
        tags: dict[str, str],
        created_by: str | None,
    ) -> Run:
        experiment_id = get_or_create_experiment(self._client, f"models/{name}")
        run_tags = {
            **tags,
            TAG_TENANT: tenant,
            TAG_FRAMEWORK: fw.value,
            TAG_CREATED_BY: created_by or "",
        }
        with translated(f"experiment 'models/{name}'"):
            run = self._client.create_run(experiment_id, tags=run_tags, run_name=f"register-{name}")
        run_id = run.info.run_id
        try:
            with translated(f"run {run_id!r}"):
                self._client.log_batch(
                    run_id, params=[Param(k, v) for k, v in params.items()], synchronous=True
                )
            log_metrics(self._client, run_id, metrics, step=0)
            with translated(f"run {run_id!r}"):
                self._client.log_artifacts(run_id, str(local), "model")
                self._client.set_terminated(run_id, "FINISHED")
                return self._client.get_run(run_id)
        except BaseException:
            self._client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise

    def create_version(
        self,
        tenant_id: str,
        model_id: str,
        run_id: str,
        *,
        artifact_path: str = "model",
        description: str = "",
        tags: dict[str, str] | None = None,
        created_by: str | None = None,
        framework: str | None = None,
    ) -> ModelVersionInfo:
        """Register the model a run logged as a new version of ``model_id``.

        Registering the same run into the same model again returns the existing
        version (pipelines re-run).

        Args:
            tenant_id: The tenant.
            model_id: The model's name; the model is created if it does not exist.
            run_id: The run that logged the model (with ``ActiveRun.log_artifact`` of
                a saved MLflow model, or ``mlflow.<flavor>.log_model``).
            artifact_path: The model's path in the run, or the logged model's name.
            description: The version's description.
            tags: User tags for the version.
            created_by: Who registered it.
            framework: If given, the run's model must be of this framework.

        Raises:
            ValidationError: For bad input, a run with no MLflow model there, or one of
                another framework than ``framework``.
            NotFoundError: If the run is not in this tenant.
        """
        name = validation.model_name(model_id)
        run_id = validation.run_id(run_id)
        path = validation.artifact_path(artifact_path) or "model"
        clean_tags = validation.tags(tags)
        expected = frameworks.parse_framework(framework) if framework else None
        with self._tenants.scope(tenant_id, create=True) as tenant:
            with translated(f"run {run_id!r}"):
                run = self._client.get_run(run_id)
            existing = self._version_of_run(name, run_id)
            if existing is not None:
                return self._version_info(tenant, existing)
            source = self._model_source(run, path)
            with tempfile.TemporaryDirectory(prefix="matih-model-") as tmp:
                local = Path(tmp) / "model"
                local.mkdir()
                with translated(f"model {path!r} of run {run_id!r}"):
                    get_artifact_repository(source).download_artifacts("", str(local))
                fw = self._framework_of(local)
                if expected is not None and fw is not expected:
                    raise ValidationError(
                        f"The run's model is {fw.value}, not {expected.value}.",
                        details={"field": "framework"},
                    )
                reqs_file = local / "requirements.txt"
                reqs = reqs_file.read_text().split() if reqs_file.exists() else []
                mv = self._new_version(
                    tenant,
                    name,
                    run,
                    source=source,
                    local_model=local,
                    framework=fw,
                    model_type=run.data.tags.get(TAG_MODEL_TYPE) or self._model_type_of(fw, local),
                    description=description,
                    created_by=created_by or run.data.tags.get("mlflow.user", ""),
                    requirements=reqs,
                    tags=clean_tags,
                )
            return self._version_info(tenant, mv)

    def _model_source(self, run: Run, path: str) -> str:
        """Where the run's model ``path`` lives: in its artifacts, or as a logged model."""
        with translated(f"run {run.info.run_id!r}"):
            # MLflow 3's log_model writes a logged model outside the run's folder (and
            # list_artifacts shows it inside), so logged models are looked at first.
            for output in run.outputs.model_outputs if run.outputs else []:
                logged = self._client.get_logged_model(output.model_id)
                if logged.name == path:
                    return logged.artifact_location
            names = {f.path for f in self._client.list_artifacts(run.info.run_id, path)}
            if f"{path}/MLmodel" in names:
                return f"{run.info.artifact_uri}/{path}"
        raise ValidationError(
            f"Run {run.info.run_id!r} has no MLflow model at {path!r}.",
            details={"field": "artifact_path", "run_id": run.info.run_id},
        )

    @staticmethod
    def _framework_of(local: Path) -> Framework:
        from mlflow.models import Model

        flavors = Model.load(str(local)).flavors
        for fw in (Framework.SKLEARN, Framework.PYTORCH, Framework.ONNX, Framework.TENSORFLOW):
            if fw.value in flavors:
                return fw
        raise ValidationError(
            f"The model's flavors {sorted(flavors)} include no supported framework.",
            details={"field": "artifact_path"},
        )

    @staticmethod
    def _model_type_of(fw: Framework, local: Path) -> str:
        """Classification, regression or clustering, read off a saved sklearn model."""
        if fw is not Framework.SKLEARN:
            return "unknown"
        import mlflow.sklearn

        try:
            return frameworks.infer_model_type(fw, mlflow.sklearn.load_model(str(local)))
        except Exception:  # noqa: BLE001 - the type is a label; a model that won't load has none
            return "unknown"

    def _version_of_run(self, name: str, run_id: str) -> ModelVersion | None:
        if not queries.is_safe(name):
            return None
        flt = f"name = {queries.quoted(name)} AND run_id = {queries.quoted(run_id)}"
        with translated():
            found = self._client.search_model_versions(flt, max_results=1)
        return found[0] if found else None

    def _new_version(
        self,
        tenant: str,
        name: str,
        run: Run,
        *,
        source: str,
        local_model: Path,
        framework: Framework,
        model_type: str,
        description: str,
        created_by: str,
        requirements: list[str],
        tags: dict[str, str],
    ) -> ModelVersion:
        """Create the version, then write its files under the registry's prefix.

        A failure after the version exists deletes it again, so no version without
        its files is left visible.
        """
        model_tags = {
            **tags,
            TAG_FRAMEWORK: framework.value,
            TAG_MODEL_TYPE: model_type,
            TAG_TENANT: tenant,
        }
        try:
            with translated(f"model {name!r}"):
                self._client.create_registered_model(
                    name, tags={**model_tags, TAG_CREATED_BY: created_by}
                )
        except ConflictError:
            with translated(f"model {name!r}"):
                for k, v in model_tags.items():
                    self._client.set_registered_model_tag(name, k, v)
        version_tags = {
            **model_tags,
            TAG_STAGE: Stage.DEVELOPMENT.value,
            TAG_CREATED_BY: created_by,
        }
        with translated(f"model {name!r}"):
            mv = self._client.create_model_version(
                name, source, run.info.run_id, tags=version_tags, description=description or None
            )
        try:
            uri = f"{self._tenants.tenant_artifact_root(tenant)}/models/{name}/{mv.version}"
            card = render_model_card(
                tenant_id=tenant,
                name=name,
                version=mv.version,
                framework=framework.value,
                model_type=model_type,
                description=description,
                metrics=run.data.metrics,
                parameters=run.data.params,
                run_id=run.info.run_id,
                experiment_id=run.info.experiment_id,
                created_by=created_by,
                requirements=requirements,
            )
            (local_model / "model_card.md").write_text(card)
            if not (local_model / "requirements.txt").exists():
                (local_model / "requirements.txt").write_text("\n".join(requirements) + "\n")
            with translated(f"artifacts of {name!r} v{mv.version}"):
                get_artifact_repository(uri).log_artifacts(str(local_model))
                self._client.set_model_version_tag(name, mv.version, TAG_ARTIFACT_URI, uri)
                return self._client.get_model_version(name, mv.version)
        except BaseException:
            with translated():
                self._client.delete_model_version(name, mv.version)
            raise

    # ----------------------------------------------------------------------- reads

    def get_model(self, tenant_id: str, model_id: str) -> ModelMetadata | None:
        """Return a model's metadata, or None if the tenant has no such model.

        Raises:
            NotFoundError: For an unknown tenant.
        """
        name = validation.model_name(model_id)
        with self._tenants.scope(tenant_id) as tenant:
            try:
                rm = self._get_registered(name)
            except NotFoundError:
                return None
            return self._metadata(tenant, rm)

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
                tenant_id, stage=stage, framework=framework, max_results=_MAX_PAGE, page_token=token
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
    ) -> _Page:
        """Return one page of the tenant's models, ordered by name.

        A stage filter is applied within the page, so a page may hold fewer than
        ``max_results`` items while more follow; the token is what tells.
        """
        want_stage = parse_stage(stage) if stage else None
        fw = frameworks.parse_framework(framework) if framework else None
        if not 1 <= max_results <= _MAX_PAGE:
            raise ValidationError(
                f"max_results must be between 1 and {_MAX_PAGE}.", details={"field": "max_results"}
            )
        page_token = validation.page_token(page_token)
        with self._tenants.scope(tenant_id) as tenant:
            with translated(bad_input=bool(page_token)):
                models = self._client.search_registered_models(
                    filter_string=queries.FRAMEWORK_FILTER[fw] if fw else None,
                    max_results=max_results,
                    order_by=["name ASC"],
                    page_token=page_token or None,
                )
            selected = [
                rm
                for rm in models
                if want_stage is None
                or any(_stage_of(v) is want_stage for v in rm.latest_versions or [])
            ]
            token = models.token
            # MLflow's registry store hands out its token as bytes, its tracking store as str.
            if isinstance(token, bytes):
                token = token.decode("ascii")
            return _Page(self._metadata_many(tenant, selected), token or None)

    def get_version(self, tenant_id: str, model_id: str, version: str | int) -> ModelVersionInfo:
        """Return one version of a model.

        Raises:
            NotFoundError: If the model or the version does not exist in this tenant.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        with self._tenants.scope(tenant_id) as tenant:
            return self._version_info(tenant, self._get_version(name, number))

    def list_versions(self, tenant_id: str, model_id: str) -> list[ModelVersionInfo]:
        """Return every version of a model, newest first."""
        name = validation.model_name(model_id)
        with self._tenants.scope(tenant_id) as tenant:
            self._get_registered(name)
            return [self._version_info(tenant, mv) for mv in self._versions_of([name])]

    # --------------------------------------------------------------------- changes

    def mirror_stage(self, tenant_id: str, model_id: str, version: str, target: Stage) -> None:
        """Write a stage the lifecycle decided onto MLflow: the version tag, MLflow's
        deprecated stage field (``models:/NAME/Production``) and the aliases."""
        with self._tenants.scope(tenant_id):
            self._set_stage(model_id, self._get_version(model_id, version), target)

    def _set_stage(self, name: str, mv: ModelVersion, target: Stage) -> None:
        """Write the stage to the version tag, MLflow's stage field and the aliases."""
        previous = _stage_of(mv)
        with translated(f"model {name!r} version {mv.version}"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self._client.set_model_version_tag(name, mv.version, TAG_STAGE, target.value)
            self._client.transition_model_version_stage(
                name, mv.version, MLFLOW_STAGE[target], archive_existing_versions=False
            )
            old_alias = STAGE_ALIAS.get(previous)
            if old_alias and old_alias in (mv.aliases or []):
                self._client.delete_registered_model_alias(name, old_alias)
            new_alias = STAGE_ALIAS.get(target)
            if new_alias:
                self._client.set_registered_model_alias(name, new_alias, mv.version)

    def stage_of(self, tenant_id: str, model_id: str, version: str) -> Stage:
        """The stage MLflow's mirror shows for a version (the lifecycle's fallback)."""
        with self._tenants.scope(tenant_id):
            return _stage_of(self._get_version(model_id, version))

    def version_metrics(self, tenant_id: str, model_id: str, version: str) -> dict[str, float]:
        """The metrics of the run that produced a version ({} if it has no run)."""
        with self._tenants.scope(tenant_id):
            mv = self._get_version(model_id, version)
            if not mv.run_id:
                return {}
            with translated(f"run {mv.run_id!r}"):
                return dict(self._client.get_run(mv.run_id).data.metrics)

    def prediction_check(
        self, tenant_id: str, model_id: str, version: str, *, require_example: bool
    ) -> list[str]:
        """Load a version and predict on its stored input example.

        Returns:
            The reasons it fails (empty when it passes).
        """
        from mlflow.models import Model
        from mlflow.pyfunc import load_model

        with self._tenants.scope(tenant_id):
            mv = self._get_version(model_id, version)
            uri = (mv.tags or {}).get(TAG_ARTIFACT_URI) or mv.source
            try:
                with tempfile.TemporaryDirectory(prefix="matih-check-") as tmp:
                    local = get_artifact_repository(uri).download_artifacts("", tmp)
                    model = load_model(local)
                    example = Model.load(local).load_input_example(local)
                    if example is None:
                        return (
                            ["no input example is stored with the model to predict on"]
                            if require_example
                            else []
                        )
                    model.predict(example)
            except Exception as exc:  # noqa: BLE001 - any failure is the gate's reason
                return [f"the model does not load and predict: {type(exc).__name__}: {exc}"[:500]]
        return []

    def delete_model(self, tenant_id: str, model_id: str) -> None:
        """Delete a model, its versions and the registry's copies of their files.

        Raises:
            NotFoundError: For an unknown model.
            ConflictError: If a version of it is in production.
        """
        name = validation.model_name(model_id)
        with self._tenants.scope(tenant_id) as tenant:
            self._get_registered(name)
            versions = self._versions_of([name])
            serving = [mv.version for mv in versions if _stage_of(mv) is Stage.PRODUCTION]
            if serving:
                raise ConflictError(
                    f"Model {name!r} has version {serving[0]} in production; move it out of "
                    "production (or roll back) before deleting the model.",
                    details={"model_id": name, "version": str(serving[0])},
                )
            with translated(f"model {name!r}"):
                self._client.delete_registered_model(name)
            self._delete_files(f"{self._tenants.tenant_artifact_root(tenant)}/models/{name}")

    def delete_version(self, tenant_id: str, model_id: str, version: str | int) -> None:
        """Delete a development, staging or archived version and its registry files.

        Raises:
            NotFoundError: For an unknown model or version.
            ConflictError: If the version is in production.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        with self._tenants.scope(tenant_id):
            mv = self._get_version(name, number)
            if _stage_of(mv) is Stage.PRODUCTION:
                raise ConflictError(
                    f"Version {number} of {name!r} is in production and cannot be deleted; "
                    "promote or roll back to another version first.",
                    details={"model_id": name, "version": number},
                )
            uri = (mv.tags or {}).get(TAG_ARTIFACT_URI)
            with translated(f"model {name!r} version {number}"):
                self._client.delete_model_version(name, number)
            if uri:
                self._delete_files(uri)

    @staticmethod
    def _delete_files(uri: str) -> None:
        # Nothing may have been written there, or the store may not delete: left to gc.
        with suppress(FileNotFoundError, NotImplementedError):
            get_artifact_repository(uri).delete_artifacts()

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
        self, tenant_id: str, run_ids: list[str], metrics: list[str]
    ) -> list[dict[str, Any]]:
        """Compare runs side by side, with one search call for all of them.

        Args:
            tenant_id: The tenant.
            run_ids: The runs, in the order the result keeps.
            metrics: The metric keys to show (missing ones are None).

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
        with self._tenants.scope(tenant_id):
            runs = {r.info.run_id: r for r in self._search_runs(ids)}
        missing = [r for r in ids if r not in runs]
        if missing:
            raise NotFoundError(
                f"Run(s) not found: {', '.join(missing)}.", details={"run_ids": missing}
            )
        return [
            {
                "run_id": rid,
                "run_name": runs[rid].info.run_name,
                "status": runs[rid].info.status,
                "parameters": dict(runs[rid].data.params),
                "metrics": {m: runs[rid].data.metrics.get(m) for m in keys},
            }
            for rid in ids
        ]

    # -------------------------------------------------------------------- helpers

    def _search_runs(self, run_ids: Sequence[str]) -> list[Run]:
        unique = list(dict.fromkeys(run_ids))
        if not unique:
            return []
        experiment_ids = all_experiment_ids(self._client)
        if not experiment_ids:
            return []
        runs: list[Run] = []
        with translated():
            for i in range(0, len(unique), 100):
                chunk = unique[i : i + 100]
                runs.extend(
                    self._client.search_runs(
                        experiment_ids,
                        filter_string=queries.in_list("attributes.run_id", chunk),
                        run_view_type=3,
                        max_results=len(chunk),
                    )
                )
        return runs

    def _get_registered(self, name: str) -> RegisteredModel:
        with translated(f"Model {name!r}"):
            return self._client.get_registered_model(name)

    def _get_version(self, name: str, number: str) -> ModelVersion:
        self._get_registered(name)
        with translated(f"Version {number} of model {name!r}"):
            return self._client.get_model_version(name, number)

    def _in_stage(self, name: str, stage: Stage) -> list[ModelVersion]:
        return [mv for mv in self._versions_of([name]) if _stage_of(mv) is stage]

    def _versions_of(self, names: Sequence[str]) -> list[ModelVersion]:
        """All versions of the named models, newest first, in as few calls as possible."""
        safe = [n for n in names if queries.is_safe(n)]
        found: list[ModelVersion] = []
        with translated():
            for i in range(0, len(safe), 100):
                found.extend(self._all_versions(queries.in_list("name", safe[i : i + 100])))
            for odd in (n for n in names if not queries.is_safe(n)):
                # A name made outside this service (with quotes, say) is never put in a
                # filter: its versions are read one by one from the model instead.
                rm = self._client.get_registered_model(odd)
                found.extend(rm.latest_versions or [])
        return sorted(found, key=lambda mv: (mv.name, -int(mv.version)))

    def _all_versions(self, flt: str) -> Iterator[ModelVersion]:
        token: str | None = None
        while True:
            page = self._client.search_model_versions(flt, max_results=10_000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def _metadata(self, tenant: str, rm: RegisteredModel) -> ModelMetadata:
        return self._metadata_many(tenant, [rm])[0]

    def _metadata_many(self, tenant: str, models: Sequence[RegisteredModel]) -> list[ModelMetadata]:
        """Build metadata for several models with three calls in all, not per model."""
        if not models:
            return []
        by_model: dict[str, list[ModelVersion]] = {}
        for mv in self._versions_of([rm.name for rm in models]):
            by_model.setdefault(mv.name, []).append(mv)
        current: dict[str, ModelVersion] = {}
        for rm in models:
            live = by_model.get(rm.name, [])
            if live:
                # The most advanced stage wins; within it, the newest version.
                current[rm.name] = max(
                    live, key=lambda mv: (STAGE_RANK[_stage_of(mv)], int(mv.version))
                )
        run_ids = [mv.run_id for mv in current.values() if mv.run_id]
        runs = {r.info.run_id: r for r in self._search_runs(run_ids)}
        out = []
        for rm in models:
            mv = current.get(rm.name)
            run = runs.get(mv.run_id) if mv is not None and mv.run_id else None
            tags = dict(rm.tags or {})
            versions = sorted((v.version for v in by_model.get(rm.name, [])), key=int)
            out.append(
                ModelMetadata(
                    model_id=rm.name,
                    tenant_id=tenant,
                    name=rm.name,
                    description=(mv.description if mv else None) or rm.description or "",
                    model_type=tags.get(TAG_MODEL_TYPE, "unknown"),
                    framework=((mv.tags or {}).get(TAG_FRAMEWORK) if mv else None)
                    or tags.get(TAG_FRAMEWORK, ""),
                    current_version=str(mv.version) if mv else "",
                    versions=[str(v) for v in versions],
                    stage=_stage_of(mv).value if mv else Stage.DEVELOPMENT.value,
                    metrics=dict(run.data.metrics) if run else {},
                    parameters=dict(run.data.params) if run else {},
                    tags=_user_tags(tags),
                    created_at=_ts(rm.creation_timestamp),
                    updated_at=_ts(rm.last_updated_timestamp),
                    created_by=tags.get(TAG_CREATED_BY, ""),
                    artifact_uri=(mv.tags or {}).get(TAG_ARTIFACT_URI, "") if mv else "",
                )
            )
        return out

    @staticmethod
    def _version_info(tenant: str, mv: ModelVersion) -> ModelVersionInfo:
        tags = dict(mv.tags or {})
        return ModelVersionInfo(
            model_id=mv.name,
            tenant_id=tenant,
            version=str(mv.version),
            stage=_stage_of(mv).value,
            framework=tags.get(TAG_FRAMEWORK, ""),
            run_id=mv.run_id,
            source=mv.source,
            artifact_uri=tags.get(TAG_ARTIFACT_URI, ""),
            description=mv.description or "",
            tags=_user_tags(tags),
            aliases=list(mv.aliases or []),
            created_at=_ts(mv.creation_timestamp),
            updated_at=_ts(mv.last_updated_timestamp),
        )
