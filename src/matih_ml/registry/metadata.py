"""What the registry returns, and the tags it keeps on MLflow objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """The lifecycle stages of a model version."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class Framework(StrEnum):
    """The model formats the registry can store and load."""

    SKLEARN = "sklearn"
    PYTORCH = "pytorch"
    ONNX = "onnx"
    TENSORFLOW = "tensorflow"


# How "far along" a stage is: a model's own stage is that of its most advanced version.
STAGE_RANK = {Stage.ARCHIVED: 0, Stage.DEVELOPMENT: 1, Stage.STAGING: 2, Stage.PRODUCTION: 3}

# MLflow's deprecated stage field is mirrored so that models:/NAME/Production keeps working.
MLFLOW_STAGE = {
    Stage.DEVELOPMENT: "None",
    Stage.STAGING: "Staging",
    Stage.PRODUCTION: "Production",
    Stage.ARCHIVED: "Archived",
}
# The aliases that follow the stages (models:/NAME@production).
STAGE_ALIAS = {Stage.STAGING: "staging", Stage.PRODUCTION: "production"}

TAG_STAGE = "matih.stage"
TAG_FRAMEWORK = "matih.framework"
TAG_MODEL_TYPE = "matih.model_type"
TAG_CREATED_BY = "matih.created_by"
TAG_ARTIFACT_URI = "matih.artifact_uri"
TAG_TENANT = "matih.tenant_id"
# Which runtime serves the version (onnxruntime, pyfunc or sandbox), and the record of
# its ONNX twin's check (JSON), set at registration (matih_ml.registry.onnx_twin).
TAG_SERVING_RUNTIME = "matih.serving_runtime"
TAG_ONNX_TWIN = "matih.onnx_twin"
# A signed version (docs/provenance.md): "sha256:<hex>" of its signature file, and the
# id of the key that signed it.
TAG_SIGNATURE_DIGEST = "matih.signature.digest"
TAG_SIGNATURE_KEY_ID = "matih.signature.key_id"
# Set on a version while its files are being written, removed once they are all there:
# a version that still carries it is half-registered (its writer died), and is never
# shown; start-up and `matih-ml gc` delete it.
TAG_REGISTRATION = "matih.registration"
REGISTRATION_PENDING = "pending"
# On the runs register_model makes to hold a model's files: they belong to the
# version, and go when it goes.
TAG_RUN_KIND = "matih.run_kind"
RUN_KIND_REGISTRATION = "registration"


@dataclass
class ModelMetadata:
    """Model metadata stored in the registry (every field of the specification).

    ``model_id`` is the model's name within its tenant. ``stage`` is the stage of
    its most advanced live version, and ``current_version`` is that version; its
    metrics and parameters are the ones shown.
    """

    model_id: str
    tenant_id: str
    name: str
    description: str
    model_type: str
    framework: str
    current_version: str
    versions: list[str]
    stage: str
    metrics: dict[str, float]
    parameters: dict[str, Any]
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime
    created_by: str
    artifact_uri: str


@dataclass
class ModelVersionInfo:
    """One version of a registered model."""

    model_id: str
    tenant_id: str
    version: str
    stage: str
    framework: str
    run_id: str | None
    source: str
    artifact_uri: str
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    serving_runtime: str | None = None
    onnx_twin: dict[str, Any] | None = None


@dataclass(frozen=True)
class Registration:
    """What registering a run's model gave: the version, and whether this call created it
    (False: the run was registered into the model before, and that version is returned)."""

    version: ModelVersionInfo
    created: bool
