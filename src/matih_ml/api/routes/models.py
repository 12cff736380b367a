"""Registered models and their versions."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException

from matih_ml import validation
from matih_ml.api.body import JsonBodyRoute, parse_json
from matih_ml.api.deps import Admin, Reader, ServicesDep, Writer
from matih_ml.api.downloads import attachment
from matih_ml.api.params import (
    ArtifactPath,
    FrameworkName,
    MaxResults,
    ModelId,
    PageToken,
    StageName,
    Version,
)
from matih_ml.api.quotas import upload_slot
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.checks import invalid
from matih_ml.contracts.names import UploadFrameworkName
from matih_ml.contracts.schemas import (
    ArtifactRead,
    ModelCreate,
    ModelRead,
    Page,
    StageChange,
    UploadMetadata,
    VersionCreate,
    VersionRead,
    VersionRegistered,
    VersionWithCard,
)
from matih_ml.errors import ValidationError
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1/models", tags=["models"], responses=ERRORS, route_class=JsonBodyRoute
)

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ModelCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "framework", "file"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {
                            "type": "string",
                            "pattern": validation.MODEL_NAME_PATTERN,
                            "minLength": 1,
                            "maxLength": 128,
                        },
                        "framework": {"type": "string", "enum": ["sklearn", "onnx", "pytorch"]},
                        "file": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "UploadMetadata as JSON"},
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=ModelRead,
    openapi_extra=_UPLOAD_SCHEMA,
    responses={200: {"model": ModelRead, "description": "The run was registered before"}},
)
async def register_model(
    request: Request, response: Response, services: ServicesDep, who: Writer
) -> ModelRead:
    """Register a model or a new version: JSON naming a run, or a multipart file upload."""
    from starlette.concurrency import run_in_threadpool

    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=8)
        except HTTPException as exc:  # a malformed or oversized multipart body
            raise ValidationError(
                f"The multipart body is not valid: {exc.detail}", details={"field": "body"}
            ) from None
        upload = form.get("file")
        name, framework = form.get("name"), form.get("framework")
        if not isinstance(name, str) or not isinstance(framework, str):
            raise ValidationError(
                "Fields 'name' and 'framework' are required.", details={"field": "name"}
            )
        if upload is None or isinstance(upload, str):
            raise ValidationError("Field 'file' must be a file.", details={"field": "file"})
        data = await upload.read()
        meta = _upload_metadata(form.get("metadata"))

        def store() -> ModelRead:
            # One of the tenant's upload slots, and room in its storage (429 / 413).
            with upload_slot(request.app, who.tenant_id, len(data)):
                return LocalClient(services, who).models.upload(
                    name,
                    data,
                    # Checked where the file is read (registry.uploads), as for any caller.
                    framework=cast(UploadFrameworkName, framework),
                    description=meta.description,
                    metrics=meta.metrics,
                    parameters=meta.parameters,
                    tags=meta.tags,
                    model_type=meta.model_type,
                )

        return await run_in_threadpool(store)
    if ctype.startswith("application/json") or not ctype:
        try:
            body = ModelCreate.model_validate_json(await request.body() or b"{}")
        except PydanticValidationError as exc:
            raise invalid(exc) from None
        read = await run_in_threadpool(
            LocalClient(services, who).models.register,
            body.name,
            body.run_id,
            artifact_path=body.artifact_path,
            framework=body.framework,
            description=body.description,
            metrics=body.metrics,
            parameters=body.parameters,
            tags=body.tags,
        )
        if read.created is False:
            response.status_code = 200  # nothing was created: the run's version, as it was
        return read
    raise ValidationError(
        f"Content type {ctype!r} is not accepted: send application/json or multipart/form-data.",
        details={"field": "content-type"},
    )


def _upload_metadata(raw: Any) -> UploadMetadata:
    if raw is None:
        return UploadMetadata()
    if not isinstance(raw, str):
        raise ValidationError("Field 'metadata' must be JSON text.", details={"field": "metadata"})
    try:
        return UploadMetadata.model_validate(parse_json(raw))
    except ValidationError as exc:
        raise ValidationError(
            f"Field 'metadata' is not valid: {exc.message}", details={"field": "metadata"}
        ) from None
    except PydanticValidationError as exc:
        raise ValidationError(
            f"Field 'metadata' is not valid: {exc}", details={"field": "metadata"}
        ) from None


_TAG_KEY = r"[\w\-. /:]+"
NameQuery = Annotated[
    str | None,
    Query(max_length=128, description="Keep models whose name contains this (any case)"),
]
TagQuery = Annotated[
    str | None,
    Query(
        max_length=5251,
        pattern=rf"^{_TAG_KEY}=",
        description="key=value: keep models with this tag (the key follows the tag key rule)",
    ),
]


@router.get("", response_model=Page[ModelRead])
def list_models(
    services: ServicesDep,
    who: Reader,
    stage: StageName | None = None,
    framework: FrameworkName | None = None,
    q: NameQuery = None,
    tag: TagQuery = None,
    page_token: PageToken = None,
    max_results: MaxResults = 100,
) -> Page[ModelRead]:
    """List the tenant's models: by stage, framework, part of the name, and a tag."""
    return LocalClient(services, who).models.list(
        stage=stage,
        framework=framework,
        q=q,
        tag=tag,
        page_token=page_token,
        max_results=max_results,
    )


@router.get("/{model_id}", response_model=ModelRead)
def get_model(model_id: ModelId, services: ServicesDep, who: Reader) -> ModelRead:
    """Get one model."""
    return LocalClient(services, who).models.get(model_id)


@router.delete("/{model_id}", status_code=204)
def delete_model(model_id: ModelId, services: ServicesDep, who: Admin) -> Response:
    """Delete a model and its versions (refused while one is in production)."""
    LocalClient(services, who).models.delete(model_id)
    return Response(status_code=204)


@router.post(
    "/{model_id}/versions",
    status_code=201,
    response_model=VersionRegistered,
    responses={200: {"model": VersionRegistered, "description": "The run was registered before"}},
)
def create_version(
    model_id: ModelId, body: VersionCreate, response: Response, services: ServicesDep, who: Writer
) -> VersionRegistered:
    """Register a run's model as a new version (the same run again: its version, 200)."""
    done = LocalClient(services, who).models.create_version(
        model_id,
        body.run_id,
        artifact_path=body.artifact_path,
        description=body.description,
        tags=body.tags,
    )
    if not done.created:
        response.status_code = 200
    return done


@router.get("/{model_id}/versions", response_model=Page[VersionRead])
def list_versions(model_id: ModelId, services: ServicesDep, who: Reader) -> Page[VersionRead]:
    """List a model's versions, newest first."""
    return LocalClient(services, who).models.list_versions(model_id)


@router.get("/{model_id}/versions/{version}", response_model=VersionWithCard)
def get_version(
    model_id: ModelId,
    version: Version,
    services: ServicesDep,
    who: Reader,
    with_card: Annotated[bool, Query(description="Include the version's model card")] = False,
) -> VersionWithCard:
    """Get one version (and, asked, its model card: the registry's model_card.md)."""
    return LocalClient(services, who).models.get_version(model_id, version, with_card=with_card)


@router.get("/{model_id}/versions/{version}/files", response_model=list[ArtifactRead])
def list_version_files(
    model_id: ModelId,
    version: Version,
    services: ServicesDep,
    who: Reader,
    path: Annotated[str | None, Query(max_length=1024)] = None,
) -> list[ArtifactRead]:
    """List the version's own files (the registry's copy) at ``path``."""
    return LocalClient(services, who).models.list_files(model_id, version, path)


@router.get(
    "/{model_id}/versions/{version}/files/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_version_file(
    model_id: ModelId, version: Version, path: ArtifactPath, services: ServicesDep, who: Reader
) -> Response:
    """Download one of the version's own files."""
    data = LocalClient(services, who).models.read_file(model_id, version, path)
    # The file keeps its own name (the registry's copy is written under the path given).
    return attachment(data, PurePosixPath(path).name)


@router.delete("/{model_id}/versions/{version}", status_code=204)
def delete_version(
    model_id: ModelId, version: Version, services: ServicesDep, who: Admin
) -> Response:
    """Delete a development, staging or archived version."""
    LocalClient(services, who).models.delete_version(model_id, version)
    return Response(status_code=204)


@router.put("/{model_id}/stage", response_model=ModelRead)
def transition_stage(
    model_id: ModelId, body: StageChange, services: ServicesDep, who: Writer
) -> ModelRead:
    """Move a version to another stage, through the gates (admins may force, with a reason)."""
    return LocalClient(services, who).lifecycle.transition(
        model_id, body.version, body.stage, reason=body.reason, force=body.force
    )
