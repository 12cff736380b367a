"""Registered models, their versions and their files, in process (``RegistryContract``)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matih_ml.auth.principal import Permission
from matih_ml.contracts.checks import checked, file_bytes
from matih_ml.contracts.names import FrameworkName, StageName, UploadFrameworkName
from matih_ml.contracts.protocols import ArtifactList, ModelFile, ParamValue, RegistryContract
from matih_ml.contracts.schemas import (
    ArtifactRead,
    ModelCreate,
    ModelRead,
    Page,
    UploadMetadata,
    VerificationRead,
    VersionCreate,
    VersionRead,
    VersionRegistered,
    VersionWithCard,
)
from matih_ml.contracts.walk import ModelsWalk
from matih_ml.local._base import Door, implements
from matih_ml.registry.bom import bill_of_materials
from matih_ml.registry.uploads import uploaded_model


@implements(RegistryContract)
class LocalModels(ModelsWalk, Door):
    """The tenant's registered models, their versions and the versions' own files.

    Registrations are made by the caller's subject (``created_by``), as over REST.
    """

    def list(
        self,
        *,
        stage: StageName | None = None,
        framework: FrameworkName | None = None,
        q: str | None = None,
        tag: str | None = None,
        page_token: str | None = None,
        max_results: int = 100,
    ) -> Page[ModelRead]:
        tenant = self._need(Permission.READ)
        page = self._s.registry.list_models_page(
            tenant,
            stage=stage,
            framework=framework,
            max_results=max_results,
            page_token=page_token,
            q=q,
            tag=tag,
        )
        return Page(
            items=[ModelRead.of(m) for m in page.items], next_page_token=page.next_page_token
        )

    def get(self, model_id: str) -> ModelRead:
        tenant = self._need(Permission.READ)
        return ModelRead.of(self._s.registry.require_model(tenant, model_id))

    def delete(self, model_id: str) -> None:
        tenant = self._need(Permission.ADMIN)
        self._s.lifecycle.delete_model(tenant, model_id, actor=self._who.subject)

    def register(
        self,
        name: str,
        run_id: str,
        *,
        artifact_path: str = "model",
        framework: FrameworkName | None = None,
        description: str = "",
        metrics: Mapping[str, float] | None = None,
        parameters: Mapping[str, ParamValue] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelRead:
        tenant = self._need(Permission.WRITE)
        # The REST body's own checks (name, run id, lengths, finite metrics), for callers
        # that did not come through a request body.
        body = checked(
            ModelCreate,
            name=name,
            run_id=run_id,
            artifact_path=artifact_path,
            framework=framework,
            description=description,
            metrics=_plain(metrics),
            parameters=_plain(parameters),
            tags=_plain(tags),
        )
        done = self._s.lifecycle.register_run(
            tenant,
            body.name,
            body.run_id,
            artifact_path=body.artifact_path,
            description=body.description,
            tags=body.tags,
            created_by=self._who.subject,
            framework=body.framework,
            metrics=body.metrics,
            parameters=body.parameters,
        )
        found = self._s.registry.require_model(tenant, body.name)
        return ModelRead.of(found, done.version.version, done.created)

    def upload(
        self,
        name: str,
        file: ModelFile,
        *,
        framework: UploadFrameworkName,
        description: str = "",
        metrics: Mapping[str, float] | None = None,
        parameters: Mapping[str, ParamValue] | None = None,
        tags: Mapping[str, str] | None = None,
        model_type: str | None = None,
    ) -> ModelRead:
        tenant = self._need(Permission.WRITE)
        meta = checked(
            UploadMetadata,
            description=description,
            metrics=_plain(metrics),
            parameters=_plain(parameters),
            tags=_plain(tags),
            model_type=model_type,
        )
        data = file_bytes(file)[1]
        # A pickle is opened by the tenant's upload sandbox, never here (registry.uploads).
        with uploaded_model(tenant, framework, data, self._s.runtime) as model:
            md, v = self._s.lifecycle.register_model(
                tenant,
                name,
                model,
                framework,
                meta.metrics,
                meta.parameters,
                meta.tags,
                description=meta.description,
                model_type=meta.model_type,
                created_by=self._who.subject,
            )
        return ModelRead.of(md, v.version)

    def create_version(
        self,
        model_id: str,
        run_id: str,
        *,
        artifact_path: str = "model",
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> VersionRegistered:
        tenant = self._need(Permission.WRITE)
        body = checked(
            VersionCreate,
            run_id=run_id,
            artifact_path=artifact_path,
            description=description,
            tags=_plain(tags),
        )
        done = self._s.lifecycle.register_run(
            tenant,
            model_id,
            body.run_id,
            artifact_path=body.artifact_path,
            description=body.description,
            tags=body.tags,
            created_by=self._who.subject,
        )
        return VersionRegistered(**VersionRead.of(done.version).model_dump(), created=done.created)

    def list_versions(self, model_id: str) -> Page[VersionRead]:
        tenant = self._need(Permission.READ)
        items = self._s.registry.list_versions(tenant, model_id)
        return Page(items=[VersionRead.of(v) for v in items])

    def get_version(
        self, model_id: str, version: str | int, *, with_card: bool = False
    ) -> VersionWithCard:
        tenant = self._need(Permission.READ)
        v = VersionRead.of(self._s.registry.get_version(tenant, model_id, version))
        card = self._s.registry.model_card(tenant, model_id, version) if with_card else None
        return VersionWithCard(**v.model_dump(), model_card=card)

    def delete_version(self, model_id: str, version: str | int) -> None:
        tenant = self._need(Permission.ADMIN)
        self._s.lifecycle.delete_version(tenant, model_id, version, actor=self._who.subject)

    def list_files(
        self, model_id: str, version: str | int, path: str | None = None
    ) -> ArtifactList:
        tenant = self._need(Permission.READ)
        files = self._s.registry.list_version_files(tenant, model_id, version, path)
        return [ArtifactRead(path=f.path, is_dir=f.is_dir, file_size=f.file_size) for f in files]

    def read_file(self, model_id: str, version: str | int, path: str) -> bytes:
        tenant = self._need(Permission.READ)
        with tempfile.TemporaryDirectory() as tmp:
            local = self._s.registry.download_version_file(
                tenant, model_id, version, path, Path(tmp)
            )
            # Checked against the version's signature before a byte is sent.
            rel = local.relative_to(Path(tmp)).as_posix()
            self._s.signed_files.require(tenant, model_id, str(version), rel, local)
            return local.read_bytes()

    def verify(self, model_id: str, version: str | int) -> VerificationRead:
        tenant = self._need(Permission.READ)
        provenance = self._s.provenance
        found = provenance.verify(tenant, model_id, str(version))
        return VerificationRead(
            model=found.model,
            version=found.version,
            status=found.status,
            reason=found.reason,
            key_id=found.key_id,
            signature_digest=found.signature_digest,
            files=found.files,
            promotable=provenance.promotable(found),
        )

    def bom(self, model_id: str, version: str | int) -> dict[str, Any]:
        tenant = self._need(Permission.READ)
        return bill_of_materials(self._s.backend, self._s.tenants, tenant, model_id, str(version))


def _plain(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """A body field's mapping as a dict ({} for None)."""
    return dict(mapping) if mapping else {}
