"""The specification's async ``ModelRegistry``: each call runs in a worker thread.

MLflow is synchronous; awaiting these methods never blocks the event loop.
The tenant binding travels with the call, since ``asyncio.to_thread`` copies
the caller's context into the worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from matih_ml.backend import use_as_mlflow_default
from matih_ml.config import Settings
from matih_ml.registry.lifecycle import LifecycleService
from matih_ml.registry.metadata import ModelMetadata, ModelVersionInfo
from matih_ml.registry.service import RegistryService


class ModelRegistry:
    """MLflow-backed model registry with tenant isolation.

    Args:
        registry: The synchronous registry to run; built from ``settings`` if omitted.
        lifecycle: The lifecycle (stage moves through gates); built with the registry.
        settings: Used when they are omitted (default: from the environment).
    """

    def __init__(
        self,
        registry: RegistryService | None = None,
        lifecycle: LifecycleService | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self._registry = registry
        self._lifecycle = lifecycle
        self._settings = settings

    def _build(self) -> None:
        from matih_ml.services import build_services

        services = build_services(self._settings or Settings())
        use_as_mlflow_default(services.backend)
        self._registry = self._registry or services.registry
        self._lifecycle = self._lifecycle or services.lifecycle

    @property
    def sync(self) -> RegistryService:
        """The synchronous registry, for scripts and notebooks."""
        if self._registry is None:
            self._build()
        assert self._registry is not None
        return self._registry

    @property
    def lifecycle(self) -> LifecycleService:
        """The synchronous lifecycle: stage moves, approvals, history, rollback."""
        if self._lifecycle is None:
            self._build()
        assert self._lifecycle is not None
        return self._lifecycle

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
        await asyncio.to_thread(self.lifecycle.delete_model, tenant_id, model_id)

    async def create_version(
        self, tenant_id: str, model_id: str, run_id: str, **options: Any
    ) -> ModelVersionInfo:
        """Register the model logged by ``run_id`` as a new version of ``model_id``."""
        return await asyncio.to_thread(
            self.sync.create_version, tenant_id, model_id, run_id, **options
        )

    async def transition_stage(
        self, tenant_id: str, model_id: str, version: str, target_stage: str, **options: Any
    ) -> ModelMetadata:
        """Transition a model version to a new stage, through the lifecycle's gates."""
        result = await asyncio.to_thread(
            self.lifecycle.transition_stage,
            tenant_id,
            model_id,
            version,
            target_stage,
            **options,
        )
        return result.model

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
