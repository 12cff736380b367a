"""Registration: a model object or a run's model becomes a new registered version.

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

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunStatus
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from matih_ml import validation
from matih_ml.crashpoints import crash_point
from matih_ml.errors import ConflictError, ValidationError
from matih_ml.events.outbox import TAG_EVENT_INTENT
from matih_ml.mlflow_errors import translated
from matih_ml.monitoring.reference import write_reference_profile
from matih_ml.registry import frameworks, queries
from matih_ml.registry.metadata import (
    REGISTRATION_PENDING,
    RUN_KIND_REGISTRATION,
    TAG_ARTIFACT_URI,
    TAG_CREATED_BY,
    TAG_FRAMEWORK,
    TAG_MODEL_TYPE,
    TAG_ONNX_TWIN,
    TAG_REGISTRATION,
    TAG_RUN_KIND,
    TAG_SERVING_RUNTIME,
    TAG_STAGE,
    TAG_TENANT,
    Framework,
    ModelMetadata,
    ModelVersionInfo,
    Stage,
)
from matih_ml.registry.model_card import render_model_card, serving_line
from matih_ml.registry.onnx_twin import make_twin, serving_runtime
from matih_ml.registry.views import build_metadata, is_complete, version_info
from matih_ml.runtime.files import source_inside
from matih_ml.runtime.loader import ModelRuntime, SavedModelFolder
from matih_ml.tenancy import TenantDirectory
from matih_ml.tracking.experiments import get_or_create_experiment
from matih_ml.tracking.metrics import log_metrics


class Registrar:
    """Creates registered versions (used by :class:`RegistryService`).

    Args:
        client: The MLflow client.
        tenants: The tenant directory.
        runtime: Checks the model's files and loads it (in process or sandboxed) for
            its profile and type.
        sign: Signs a version's finished folder with the tenant's key (writing its
            signature into it) and answers the tags that record it; None signs nothing.
    """

    def __init__(
        self,
        client: MlflowClient,
        tenants: TenantDirectory,
        runtime: ModelRuntime,
        *,
        sign: Callable[[str, Path], dict[str, str]] | None = None,
    ) -> None:
        self._client = client
        self._tenants = tenants
        self._runtime = runtime
        self._sign = sign

    def _get_registered(self, name: str) -> RegisteredModel:
        with translated(f"Model {name!r}"):
            return self._client.get_registered_model(name)

    def _metadata(self, tenant: str, rm: RegisteredModel) -> ModelMetadata:
        return build_metadata(self._client, tenant, [rm])[0]

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
        intent_id: str | None = None,
    ) -> tuple[ModelMetadata, ModelVersionInfo]:
        """Register a new model or version; return the model and the version created.

        The model is logged into a run of the tenant's experiment ``models/<name>``
        with its metrics and parameters, then registered as a new version in
        ``development``. Everything is validated before anything is written.

        Args:
            tenant_id: The tenant.
            name: The model's name within the tenant.
            model: An sklearn estimator, a ``torch.nn.Module`` or an ``onnx.ModelProto``;
                or a :class:`SavedModelFolder` (an upload the sandbox saved already).
            framework: ``sklearn``, ``pytorch`` or ``onnx``.
            metrics: Evaluation metrics of this version.
            parameters: Training parameters (stored as strings).
            tags: User tags for the model and the version.
            description: The version's description.
            model_type: classification, regression, clustering (inferred for sklearn).
            created_by: Who registered it.
            input_example: A sample input, stored with the model (and its signature).
            intent_id: The ``MODEL_REGISTERED`` intent this registration carries out
                (tagged on the version, for the reconciler).

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
        saved = model if isinstance(model, SavedModelFolder) else None
        if saved is None:
            frameworks.check_model(fw, model)
        clean_metrics = validation.metrics(metrics)
        clean_params = validation.params(parameters)
        clean_tags = validation.tags(tags)
        kind = model_type or (saved.model_type if saved else frameworks.infer_model_type(fw, model))
        with tempfile.TemporaryDirectory(prefix="matih-model-") as tmp:
            local = Path(tmp) / "model"
            if saved is not None:
                shutil.copytree(saved.path, local, symlinks=True)
                reqs_file = local / "requirements.txt"
                reqs = reqs_file.read_text().split() if reqs_file.is_file() else []
            else:
                reqs = frameworks.save_model(fw, model, local, input_example)
            self._runtime.inspect(tenant_id, name, local)
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
                    intent_id=intent_id,
                )
                return (
                    self._metadata(tenant, self._get_registered(mv.name)),
                    version_info(tenant, mv),
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
            TAG_RUN_KIND: RUN_KIND_REGISTRATION,
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
        metrics: dict[str, float] | None = None,
        parameters: dict[str, Any] | None = None,
        intent_id: str | None = None,
    ) -> tuple[ModelVersionInfo, bool]:
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
            metrics: Evaluation metrics to add to the run (step 0) with the new version;
                written only once every check has passed, and not again on a re-run.
            parameters: Parameters to add to the run, likewise.
            intent_id: The ``MODEL_REGISTERED`` intent this carries out.

        Returns:
            The version, and whether this call created it (False: the run was
            registered into the model before).

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
        extra_metrics = validation.metrics(metrics or {})
        extra_params = validation.params(parameters)
        with self._tenants.scope(tenant_id, create=True) as tenant:
            with translated(f"run {run_id!r}"):
                run = self._client.get_run(run_id)
            existing = self._version_of_run(name, run_id)
            if existing is not None:
                return version_info(tenant, existing), False
            source = self._model_source(run, path)
            source_inside(source, self._tenants.tenant_artifact_root(tenant), "run_id")
            with tempfile.TemporaryDirectory(prefix="matih-model-") as tmp:
                local = Path(tmp) / "model"
                local.mkdir()
                with translated(f"model {path!r} of run {run_id!r}"):
                    get_artifact_repository(source).download_artifacts("", str(local))
                # The files are data until proven otherwise: every path in the MLmodel
                # stays in this folder, and code-bearing formats are allowed here.
                found = self._runtime.inspect(tenant, name, local)
                fw = self._framework_of(local)
                if expected is not None and fw is not expected:
                    raise ValidationError(
                        f"The run's model is {fw.value}, not {expected.value}.",
                        details={"field": "framework"},
                    )
                if extra_metrics or extra_params:
                    log_metrics(self._client, run_id, extra_metrics, step=0)
                    with translated(f"run {run_id!r}"):
                        self._client.log_batch(
                            run_id, params=[Param(k, v) for k, v in extra_params.items()]
                        )
                        run = self._client.get_run(run_id)  # the card shows them too
                reqs_file = local / "requirements.txt"
                reqs = reqs_file.read_text().split() if reqs_file.exists() else []
                mv = self._new_version(
                    tenant,
                    name,
                    run,
                    source=source,
                    local_model=local,
                    framework=fw,
                    model_type=run.data.tags.get(TAG_MODEL_TYPE)
                    or (self._model_type_of(fw, local) if found.in_process else "unknown"),
                    description=description,
                    created_by=created_by or run.data.tags.get("mlflow.user", ""),
                    requirements=reqs,
                    tags=clean_tags,
                    intent_id=intent_id,
                )
            return version_info(tenant, mv), True

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
            found = self._client.search_model_versions(flt, max_results=100)
        # A half-registered one does not count: its files may be missing.
        return next((mv for mv in found if is_complete(mv)), None)

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
        intent_id: str | None = None,
    ) -> ModelVersion:
        """Create the version, then write its files under the registry's prefix.

        The version is created marked pending, which hides it, and the mark is taken
        off once its files are all written. A failure in between deletes it again; a
        process killed in between leaves a hidden version that start-up and
        ``matih-ml gc`` remove (:mod:`matih_ml.registry.cleanup`).
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
            TAG_REGISTRATION: REGISTRATION_PENDING,
        }
        if intent_id:
            version_tags[TAG_EVENT_INTENT] = intent_id
        with translated(f"model {name!r}"):
            mv = self._client.create_model_version(
                name, source, run.info.run_id, tags=version_tags, description=description or None
            )
        crash_point("register.after_version")
        try:
            uri = f"{self._tenants.tenant_artifact_root(tenant)}/models/{name}/{mv.version}"
            with self._runtime.open(tenant, name, local_model) as loaded:
                write_reference_profile(local_model, loaded)
                # After the profile: a sandbox the conversion kills is needed no more.
                twin = make_twin(self._runtime, loaded, local_model)
                runtime = serving_runtime(loaded, twin)
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
                serving=serving_line(runtime, twin),
            )
            (local_model / "model_card.md").write_text(card)
            if not (local_model / "requirements.txt").exists():
                (local_model / "requirements.txt").write_text("\n".join(requirements) + "\n")
            # Signed last, once every file of the folder is in place: what is uploaded
            # is what was signed.
            signature = self._sign(tenant, local_model) if self._sign is not None else {}
            with translated(f"artifacts of {name!r} v{mv.version}"):
                get_artifact_repository(uri).log_artifacts(str(local_model))
                self._client.set_model_version_tag(name, mv.version, TAG_ARTIFACT_URI, uri)
                for key, value in signature.items():
                    self._client.set_model_version_tag(name, mv.version, key, value)
                self._client.set_model_version_tag(name, mv.version, TAG_SERVING_RUNTIME, runtime)
                if twin is not None:
                    self._client.set_model_version_tag(
                        name, mv.version, TAG_ONNX_TWIN, twin.as_json()
                    )
                self._client.delete_model_version_tag(name, mv.version, TAG_REGISTRATION)
                crash_point("register.after_visible")
                return self._client.get_model_version(name, mv.version)
        except BaseException:
            with translated():
                self._client.delete_model_version(name, mv.version)
            raise
