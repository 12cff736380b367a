"""The specification's async ``ModelRegistry``: each call runs in a worker thread.

MLflow is synchronous; awaiting these methods never blocks the event loop.
The tenant binding travels with the call, since ``asyncio.to_thread`` copies
the caller's context into the worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from matih_ml.backend import connect, use_as_mlflow_default
from matih_ml.config import Settings
from matih_ml.registry.metadata import ModelMetadata, ModelVersionInfo
from matih_ml.registry.service import RegistryService
from matih_ml.tenancy import TenantDirectory


class ModelRegistry:
    """MLflow-backed model registry with tenant isolation.

    Args:
        service: The synchronous registry to run; built from ``settings`` if omitted.
        settings: Used when ``service`` is omitted (default: from the environment).
    """

    def __init__(
        self, service: RegistryService | None = None, *, settings: Settings | None = None
    ) -> None:
        self._service = service
        self._settings = settings

    @property
    def sync(self) -> RegistryService:
        """The synchronous facade, for scripts and notebooks."""
        if self._service is None:
            backend = connect(self._settings or Settings())
            use_as_mlflow_default(backend)
            self._service = RegistryService(backend, TenantDirectory(backend))
        return self._service

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
        return await asyncio.to_thread(
            self.sync.register_model,
            tenant_id,
            name,
            model,
            framework,
            metrics,
            parameters,
            tags,
            **options,
        )

    async def get_model(self, tenant_id: str, model_id: str) -> ModelMetadata | None:
        """Get model metadata by ID (the model's name), or None if there is no such model."""
        return await asyncio.to_thread(self.sync.get_model, tenant_id, model_id)

    async def list_models(
        self, tenant_id: str, stage: str | None = None, framework: str | None = None
    ) -> list[ModelMetadata]:
        """List all models for a tenant, optionally by stage and framework."""
        return await asyncio.to_thread(self.sync.list_models, tenant_id, stage, framework)

    async def delete_model(self, tenant_id: str, model_id: str) -> None:
        """Delete a model and its versions (refused while one is in production)."""
        await asyncio.to_thread(self.sync.delete_model, tenant_id, model_id)

    async def create_version(
        self, tenant_id: str, model_id: str, run_id: str, **options: Any
    ) -> ModelVersionInfo:
        """Register the model logged by ``run_id`` as a new version of ``model_id``."""
        return await asyncio.to_thread(
            self.sync.create_version, tenant_id, model_id, run_id, **options
        )

    async def transition_stage(
        self, tenant_id: str, model_id: str, version: str, target_stage: str
    ) -> ModelMetadata:
        """Transition a model version to a new stage."""
        return await asyncio.to_thread(
            self.sync.transition_stage, tenant_id, model_id, version, target_stage
        )

    async def log_training_metrics(
        self, tenant_id: str, run_id: str, step: int, metrics: dict[str, float]
    ) -> None:
        """Log training metrics for a run."""
        await asyncio.to_thread(self.sync.log_training_metrics, tenant_id, run_id, step, metrics)

    async def compare_runs(
        self, tenant_id: str, run_ids: list[str], metrics: list[str]
    ) -> list[dict[str, Any]]:
        """Compare multiple experiment runs."""
        return await asyncio.to_thread(self.sync.compare_runs, tenant_id, run_ids, metrics)
