"""The model registry: tenant-scoped models, versions and stages on MLflow."""

from matih_ml.registry.metadata import Framework, ModelMetadata, ModelVersionInfo, Stage
from matih_ml.registry.service import RegistryService

__all__ = [
    "Framework",
    "ModelMetadata",
    "ModelVersionInfo",
    "RegistryService",
    "Stage",
]
