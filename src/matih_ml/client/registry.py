"""``client.models``: registered models, their versions and their files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from matih_ml.client._base import (
    API,
    SubClient,
    body,
    implements,
    plain,
    query,
    seg,
    subpath,
)
from matih_ml.contracts.checks import file_bytes
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

_MODELS = f"{API}/models"


def _version_path(model_id: str, version: str | int) -> str:
    return f"{_MODELS}/{seg(model_id)}/versions/{seg(version)}"


@implements(RegistryContract)
class ModelsClient(ModelsWalk, SubClient):
    """Registered models, their versions and their files (``/api/v1/models``)."""

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
        params = query(
            stage=stage,
            framework=framework,
            q=q,
            tag=tag,
            page_token=page_token,
            max_results=max_results,
        )
        return self._t.call(Page[ModelRead], "GET", _MODELS, params=params)

    def get(self, model_id: str) -> ModelRead:
        return self._t.call(ModelRead, "GET", f"{_MODELS}/{seg(model_id)}")

    def delete(self, model_id: str) -> None:
        self._t.request("DELETE", f"{_MODELS}/{seg(model_id)}")

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
        sent = body(
            ModelCreate,
            name=name,
            run_id=run_id,
            artifact_path=artifact_path,
            framework=framework,
            description=description,
            metrics=plain(metrics),
            parameters=plain(parameters),
            tags=plain(tags),
        )
        # The same run again answers its version (200): safe to repeat.
        return self._t.call(ModelRead, "POST", _MODELS, json=sent, idempotent=True)

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
        filename, data = file_bytes(file)
        meta = body(
            UploadMetadata,
            description=description,
            metrics=plain(metrics),
            parameters=plain(parameters),
            tags=plain(tags),
            model_type=model_type,
        )
        form = {"name": name, "framework": framework, "metadata": json.dumps(meta)}
        # Each upload is a new version: a lost answer is not repeated (see transport.py).
        return self._t.call(ModelRead, "POST", _MODELS, data=form, files={"file": (filename, data)})

    def create_version(
        self,
        model_id: str,
        run_id: str,
        *,
        artifact_path: str = "model",
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> VersionRegistered:
        sent = body(
            VersionCreate,
            run_id=run_id,
            artifact_path=artifact_path,
            description=description,
            tags=plain(tags),
        )
        return self._t.call(
            VersionRegistered,
            "POST",
            f"{_MODELS}/{seg(model_id)}/versions",
            json=sent,
            idempotent=True,
        )

    def list_versions(self, model_id: str) -> Page[VersionRead]:
        return self._t.call(Page[VersionRead], "GET", f"{_MODELS}/{seg(model_id)}/versions")

    def get_version(
        self, model_id: str, version: str | int, *, with_card: bool = False
    ) -> VersionWithCard:
        params = {"with_card": "true"} if with_card else None
        return self._t.call(VersionWithCard, "GET", _version_path(model_id, version), params=params)

    def delete_version(self, model_id: str, version: str | int) -> None:
        self._t.request("DELETE", _version_path(model_id, version))

    def list_files(
        self, model_id: str, version: str | int, path: str | None = None
    ) -> ArtifactList:
        return self._t.call(
            list[ArtifactRead],
            "GET",
            f"{_version_path(model_id, version)}/files",
            params=query(path=path),
        )

    def read_file(self, model_id: str, version: str | int, path: str) -> bytes:
        url = f"{_version_path(model_id, version)}/files/{subpath(path)}"
        return self._t.request("GET", url).content

    def verify(self, model_id: str, version: str | int) -> VerificationRead:
        url = f"{_version_path(model_id, version)}/verification"
        return self._t.call(VerificationRead, "GET", url)

    def bom(self, model_id: str, version: str | int) -> dict[str, Any]:
        url = f"{_version_path(model_id, version)}/bom"
        data: dict[str, Any] = self._t.request("GET", url).json()
        return data
