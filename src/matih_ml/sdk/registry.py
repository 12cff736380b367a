"""The specification's async ``ModelRegistry``, on a matih-ml server or in process.

Against a server (``MATIH_URL`` and ``MATIH_API_KEY``, or ``url=``/``api_key=``), every
call goes through :class:`~matih_ml.client.MatihClient`: the key names the tenant (a
``tenant_id`` other than the key's is refused) and its role; registration, stage moves
and their gates are the server's. In process (``settings=``, or the services passed in)
the calls run the services in a worker thread. Either way awaiting never blocks the event
loop, and the answers are the same dataclasses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import TYPE_CHECKING, Any

from matih_ml.config import Settings
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.registry.metadata import ModelMetadata, ModelVersionInfo
from matih_ml.sdk import mode

if TYPE_CHECKING:
    from pydantic import BaseModel

    from matih_ml.registry.lifecycle import LifecycleService
    from matih_ml.registry.service import RegistryService


def _as(cls: type, read: BaseModel, tenant_id: str) -> Any:
    """A dataclass answer from the API's pydantic one (the fields they share)."""
    data = read.model_dump()
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in {**data, "tenant_id": tenant_id}.items() if k in names})


def _model_file(model: Any, framework: str) -> tuple[str, bytes, str]:
    """An in-memory model as an upload the server accepts: (file name, bytes, framework).

    sklearn goes as a pickle, which the server unpickles in the tenant's sandbox; a
    PyTorch module as TorchScript; an ONNX ``ModelProto`` as itself.
    """
    fw = framework.lower()
    if fw in ("sklearn", "scikit-learn"):
        import pickle

        return "model.pkl", pickle.dumps(model), "sklearn"
    if fw == "onnx":
        return "model.onnx", model.SerializeToString(), "onnx"
    if fw in ("pytorch", "torch"):
        import torch

        buf = io.BytesIO()
        scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
        torch.jit.save(scripted, buf)
        return "model.pt", buf.getvalue(), "pytorch"
    raise ValidationError(
        f"framework {framework!r}: a server takes sklearn, pytorch or onnx models.",
        details={"field": "framework"},
    )


class ModelRegistry(mode.ServerOrLocal):
    """MLflow-backed model registry with tenant isolation.

    Args:
        registry: In process: the synchronous registry to run.
        lifecycle: In process: the lifecycle (stage moves through gates).
        settings: In process: build both from these.
        url: The server (else ``MATIH_URL``, else the profile).
        api_key: The key (else ``MATIH_API_KEY``, else the profile).
        profile: A profile of the client's config file.
    """

    def __init__(
        self,
        registry: RegistryService | None = None,
        lifecycle: LifecycleService | None = None,
        *,
        settings: Settings | None = None,
        url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
    ) -> None:
        self._registry = registry
        self._lifecycle = lifecycle
        self._settings = settings
        explicit_local = registry is not None or lifecycle is not None or settings is not None
        super().__init__(explicit_local, url, api_key, profile)

    # ------------------------------------------------------------------ the two modes

    def _build(self) -> None:
        from matih_ml.backend import use_as_mlflow_default
        from matih_ml.services import build_services

        services = build_services(self._settings or Settings())
        use_as_mlflow_default(services.backend)
        self._registry = self._registry or services.registry
        self._lifecycle = self._lifecycle or services.lifecycle

    @property
    def sync(self) -> RegistryService:
        """The synchronous registry (in process only), for scripts on the server."""
        self._in_process_only("sync")
        if self._registry is None:
            self._build()
        assert self._registry is not None
        return self._registry

    @property
    def lifecycle(self) -> LifecycleService:
        """The synchronous lifecycle (in process only)."""
        self._in_process_only("lifecycle")
        if self._lifecycle is None:
            self._build()
        assert self._lifecycle is not None
        return self._lifecycle

    # ------------------------------------------------------------------ the seed's calls

    async def register_model(
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
        """Register a new model or create a new version (see ``RegistryService.register_model``)."""
        if self._local:

            def local() -> ModelMetadata:
                return self.lifecycle.register_model(
                    tenant_id, name, model, framework, metrics, parameters, tags, **options
                )[0]

            return await asyncio.to_thread(local)

        def call() -> ModelMetadata:
            ml = self._server(tenant_id).client
            filename, data, fw = _model_file(model, framework)
            file = io.BytesIO(data)
            file.name = filename  # the upload's file name tells the server its format
            read = ml.models.upload(
                name,
                file,
                framework=fw,  # type: ignore[arg-type]
                description=str(options.get("description", "")),
                metrics=metrics,
                parameters=parameters,
                tags=tags,
                model_type=options.get("model_type"),
            )
            return _as(ModelMetadata, read, tenant_id)

        return await asyncio.to_thread(call)

    async def get_model(self, tenant_id: str, model_id: str) -> ModelMetadata | None:
        """Get model metadata by ID (the model's name), or None if there is no such model."""
        if self._local:
            return await asyncio.to_thread(self.sync.get_model, tenant_id, model_id)

        def call() -> ModelMetadata | None:
            try:
                read = self._server(tenant_id).client.models.get(model_id)
            except NotFoundError:
                return None
            return _as(ModelMetadata, read, tenant_id)

        return await asyncio.to_thread(call)

    async def list_models(
        self, tenant_id: str, stage: str | None = None, framework: str | None = None
    ) -> list[ModelMetadata]:
        """List all models for a tenant, optionally by stage and framework."""
        if self._local:
            return await asyncio.to_thread(self.sync.list_models, tenant_id, stage, framework)

        def call() -> list[ModelMetadata]:
            ml = self._server(tenant_id).client
            found = ml.models.all(stage=stage, framework=framework)  # type: ignore[arg-type]
            return [_as(ModelMetadata, m, tenant_id) for m in found]

        return await asyncio.to_thread(call)

    async def delete_model(self, tenant_id: str, model_id: str) -> None:
        """Delete a model and its versions (refused while one is in production)."""
        if self._local:
            await asyncio.to_thread(self.lifecycle.delete_model, tenant_id, model_id)
            return
        await asyncio.to_thread(lambda: self._server(tenant_id).client.models.delete(model_id))

    async def create_version(
        self, tenant_id: str, model_id: str, run_id: str, **options: Any
    ) -> ModelVersionInfo:
        """Register the model logged by ``run_id`` as a new version of ``model_id``: the
        same path as the API's (under the model's lock, landing where the server's
        ``MATIH_REGISTER_STAGE`` says; the same run again answers its version)."""
        if self._local:

            def local() -> ModelVersionInfo:
                return self.lifecycle.register_run(tenant_id, model_id, run_id, **options).version

            return await asyncio.to_thread(local)

        def call() -> ModelVersionInfo:
            read = self._server(tenant_id).client.models.create_version(
                model_id,
                run_id,
                artifact_path=str(options.get("artifact_path", "model")),
                description=str(options.get("description", "")),
                tags=options.get("tags"),
            )
            return _as(ModelVersionInfo, read, tenant_id)

        return await asyncio.to_thread(call)

    async def transition_stage(
        self, tenant_id: str, model_id: str, version: str, target_stage: str, **options: Any
    ) -> ModelMetadata:
        """Transition a model version to a new stage, through the lifecycle's gates."""
        if self._local:
            result = await asyncio.to_thread(
                self.lifecycle.transition_stage,
                tenant_id,
                model_id,
                version,
                target_stage,
                **options,
            )
            return result.model

        def call() -> ModelMetadata:
            read = self._server(tenant_id).client.lifecycle.transition(
                model_id,
                version,
                target_stage.lower(),  # type: ignore[arg-type]
                reason=str(options.get("reason", "")),
                force=bool(options.get("force", False)),
            )
            return _as(ModelMetadata, read, tenant_id)

        return await asyncio.to_thread(call)

    async def log_training_metrics(
        self, tenant_id: str, run_id: str, step: int, metrics: dict[str, float]
    ) -> None:
        """Log training metrics for a run."""
        if self._local:
            await asyncio.to_thread(
                self.sync.log_training_metrics, tenant_id, run_id, step, metrics
            )
            return
        points = [{"key": k, "value": v, "step": step} for k, v in metrics.items()]
        await asyncio.to_thread(
            lambda: self._server(tenant_id).client.runs.log_batch(run_id, metrics=points)
        )

    async def compare_runs(
        self, tenant_id: str, run_ids: list[str], metrics: list[str]
    ) -> list[dict[str, Any]]:
        """Compare multiple experiment runs."""
        if self._local:
            return await asyncio.to_thread(self.sync.compare_runs, tenant_id, run_ids, metrics)

        def call() -> list[dict[str, Any]]:
            rows = self._server(tenant_id).client.experiments.compare(run_ids, metrics=metrics)
            return [r.model_dump(mode="json") for r in rows]

        return await asyncio.to_thread(call)
