"""Reading MLflow's registry in bulk, and turning it into the registry's own types.

Metadata for a page of models costs three calls in all (versions, experiments,
runs), never one call per model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion, RegisteredModel

from matih_ml.mlflow_errors import translated
from matih_ml.registry import queries
from matih_ml.registry.metadata import (
    REGISTRATION_PENDING,
    STAGE_RANK,
    TAG_ARTIFACT_URI,
    TAG_CREATED_BY,
    TAG_FRAMEWORK,
    TAG_MODEL_TYPE,
    TAG_ONNX_TWIN,
    TAG_REGISTRATION,
    TAG_SERVING_RUNTIME,
    ModelMetadata,
    ModelVersionInfo,
    Stage,
)
from matih_ml.registry.stages import stage_of
from matih_ml.tracking.experiments import all_experiment_ids

_CHUNK = 100


def _ts(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(("matih.", "mlflow."))}


def search_runs(client: MlflowClient, run_ids: Sequence[str]) -> list[Run]:
    """The bound tenant's runs among ``run_ids`` (checked ids), one search per 100."""
    unique = list(dict.fromkeys(run_ids))
    if not unique:
        return []
    experiment_ids = all_experiment_ids(client)
    if not experiment_ids:
        return []
    runs: list[Run] = []
    with translated():
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            runs.extend(
                client.search_runs(
                    experiment_ids,
                    filter_string=queries.in_list("attributes.run_id", chunk),
                    run_view_type=3,
                    max_results=len(chunk),
                )
            )
    return runs


def is_complete(mv: ModelVersion) -> bool:
    """False for a version whose registration has not finished writing its files."""
    return (mv.tags or {}).get(TAG_REGISTRATION) != REGISTRATION_PENDING


def versions_of(
    client: MlflowClient, names: Sequence[str], *, include_pending: bool = False
) -> list[ModelVersion]:
    """All versions of the named models, newest first, in as few calls as possible.

    Half-registered versions are left out unless ``include_pending``.
    """
    safe = [n for n in names if queries.is_safe(n)]
    found: list[ModelVersion] = []
    with translated():
        for i in range(0, len(safe), _CHUNK):
            found.extend(_all_versions(client, queries.in_list("name", safe[i : i + _CHUNK])))
        for odd in (n for n in names if not queries.is_safe(n)):
            # A name made outside this service (with quotes, say) is never put in a
            # filter: its versions are read from the model instead.
            rm = client.get_registered_model(odd)
            found.extend(rm.latest_versions or [])
    if not include_pending:
        found = [mv for mv in found if is_complete(mv)]
    return sorted(found, key=lambda mv: (mv.name, -int(mv.version)))


def _all_versions(client: MlflowClient, flt: str) -> Iterator[ModelVersion]:
    token: str | None = None
    while True:
        page = client.search_model_versions(flt, max_results=10_000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def build_metadata(
    client: MlflowClient, tenant: str, models: Sequence[RegisteredModel]
) -> list[ModelMetadata]:
    """Metadata for several models of the bound tenant."""
    if not models:
        return []
    return assemble_metadata(
        tenant,
        models,
        versions_of(client, [rm.name for rm in models]),
        lambda run_ids: {
            r.info.run_id: (dict(r.data.metrics), dict(r.data.params))
            for r in search_runs(client, run_ids)
        },
    )


def assemble_metadata(
    tenant: str,
    models: Sequence[Any],
    versions: Sequence[Any],
    read_runs: Callable[[list[str]], dict[str, tuple[dict[str, float], dict[str, str]]]],
) -> list[ModelMetadata]:
    """Metadata from models, their live versions, and a reader of runs' metrics and
    params (MLflow entities, or the rows of :mod:`matih_ml.mlflow_adapter.model_reads`)."""
    by_model: dict[str, list[Any]] = {}
    for mv in versions:
        if is_complete(mv):
            by_model.setdefault(mv.name, []).append(mv)
    for found in by_model.values():
        found.sort(key=lambda mv: -int(mv.version))
    current: dict[str, Any] = {}
    for rm in models:
        live = by_model.get(rm.name, [])
        if live:
            # The most advanced stage wins; within it, the newest version.
            current[rm.name] = max(live, key=lambda mv: (STAGE_RANK[stage_of(mv)], int(mv.version)))
    runs = read_runs([mv.run_id for mv in current.values() if mv.run_id])
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
                stage=stage_of(mv).value if mv else Stage.DEVELOPMENT.value,
                metrics=run[0] if run else {},
                parameters=run[1] if run else {},
                tags=_user_tags(tags),
                created_at=_ts(rm.creation_timestamp),
                updated_at=_ts(rm.last_updated_timestamp),
                created_by=tags.get(TAG_CREATED_BY, ""),
                artifact_uri=(mv.tags or {}).get(TAG_ARTIFACT_URI, "") if mv else "",
            )
        )
    return out


def version_info(tenant: str, mv: ModelVersion) -> ModelVersionInfo:
    """One MLflow model version as the registry shows it."""
    tags = dict(mv.tags or {})
    framework = tags.get(TAG_FRAMEWORK, "")
    return ModelVersionInfo(
        model_id=mv.name,
        tenant_id=tenant,
        version=str(mv.version),
        stage=stage_of(mv).value,
        framework=framework,
        run_id=mv.run_id,
        source=mv.source,
        artifact_uri=tags.get(TAG_ARTIFACT_URI, ""),
        description=mv.description or "",
        tags=_user_tags(tags),
        aliases=list(mv.aliases or []),
        created_at=_ts(mv.creation_timestamp),
        updated_at=_ts(mv.last_updated_timestamp),
        # Versions registered before the runtime was recorded: an ONNX one is served by
        # onnxruntime all the same; of another, only loading it would tell.
        serving_runtime=_runtime(tags.get(TAG_SERVING_RUNTIME), framework),
        onnx_twin=_twin_record(tags.get(TAG_ONNX_TWIN)),
    )


_RUNTIMES = ("onnxruntime", "pyfunc", "sandbox")
_TWIN_STATUSES = ("passed", "failed", "skipped")


def _runtime(tag: str | None, framework: str) -> str | None:
    if tag in _RUNTIMES:
        return tag
    return "onnxruntime" if framework == "onnx" else None


def _twin_record(text: str | None) -> dict[str, Any] | None:
    """The ONNX twin's check record (a tag of ours, JSON; None if it is not one)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("status") not in _TWIN_STATUSES:
        return None
    return value
