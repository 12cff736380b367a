"""The registry as stock clients reach it, through the same lifecycle as our REST API.

- ``model-versions/create`` registers through ``LifecycleService.register_run``: under
  the model's lock, pending then ready, the registry's copy of the files with
  ``requirements.txt`` and ``model_card.md``, the landing stage of
  ``MATIH_REGISTER_STAGE`` and ``MODEL_REGISTERED`` once.
- ``transition-stage`` and the reserved aliases (``@staging``, ``@production``, and those
  a tenant's policy protects) are stage moves, through the gates, approvals, lock and
  history of ``PUT /api/v1/models/{name}/stage``. Removing a reserved alias is refused:
  the lifecycle moves it (a promotion, or a rollback).
- Deleting a version or a model goes through the lifecycle too (a production version is
  never deleted); renaming is refused.
- Tags under ``matih.`` on models and versions are the service's own.
- A version's download URI (what ``load_model("models:/NAME@production")`` fetches) is the
  registry's copy of its files: written by registration alone, signed, and checked file
  by file as it is sent; not the run's folder, which the run's editors can still write.
"""

from __future__ import annotations

import re

from mlflow.protos.model_registry_pb2 import (
    CreateModelVersion,
    CreateRegisteredModel,
    DeleteModelVersion,
    DeleteModelVersionTag,
    DeleteRegisteredModel,
    DeleteRegisteredModelAlias,
    DeleteRegisteredModelTag,
    GetModelVersionDownloadUri,
    SetModelVersionTag,
    SetRegisteredModelAlias,
    SetRegisteredModelTag,
    TransitionModelVersionStage,
)
from mlflow.server import handlers
from mlflow.server.handlers import _get_request_message, _wrap_response

from matih_ml.api.mlflow.door import Call
from matih_ml.errors import ConflictError, GateFailedError, ValidationError
from matih_ml.mlflow_errors import translated
from matih_ml.registry.metadata import TAG_ARTIFACT_URI
from matih_ml.registry.policy import PolicyStore

STAGE_ALIASES = {"staging": "staging", "production": "production"}
# MLflow's stage names, as transition-stage takes them, and ours.
_STAGES = {
    "none": "development",
    "staging": "staging",
    "production": "production",
    "archived": "archived",
}
_RUNS_URI = re.compile(r"^runs:/([^/]+)/(.+)$")
_MODELS_URI = re.compile(r"^models:/(m-[0-9a-f]+)$")


def _promotion_help(name: str) -> str:
    return (
        f"Promote with PUT /api/v1/models/{name}/stage (approvals: "
        f"/api/v1/models/{name}/versions/<version>/approvals)."
    )


def _check_tags(keys: set[str]) -> None:
    taken = sorted(k for k in keys if k.startswith("matih."))
    if taken:
        raise ValidationError(
            f"Tag {taken[0]!r} is set by matih-ml itself and cannot be written by a client.",
            details={"field": "tags", "key": taken[0]},
        )


def _model_version_answer(call: Call, response_class: type, name: str, version: str) -> object:
    with translated(f"Version {version} of {name!r}"):
        mv = call.services.backend.client.get_model_version(name, version)
    return _wrap_response(response_class(model_version=mv.to_proto()))


def _run_and_path(call: Call, source: str, run_id: str, model_id: str) -> tuple[str, str]:
    """The run that logged the model, and the model's path in it (or its logged name)."""
    client = call.services.backend.client
    if not model_id and (m := _MODELS_URI.match(source)):
        model_id = m.group(1)
    if model_id:
        with translated(f"Logged model {model_id!r}"):
            logged = client.get_logged_model(model_id)
        run_id = run_id or logged.source_run_id or ""
        if not run_id:
            raise ValidationError(
                f"Logged model {model_id!r} has no run; matih-ml registers models that a run "
                "logged.",
                details={"field": "model_id"},
            )
        return run_id, logged.name
    if m := _RUNS_URI.match(source):
        return m.group(1), m.group(2).strip("/")
    if run_id:
        physical = call.uris.to_store(source)
        with translated(f"Run {run_id!r}"):
            root = client.get_run(run_id).info.artifact_uri.rstrip("/")
        for prefix in (root, root.removeprefix("file://")):
            if physical.startswith(prefix + "/"):
                return run_id, physical[len(prefix) + 1 :].strip("/")
    raise ValidationError(
        "matih-ml registers models that a run logged: give run_id with a runs:/ source, or "
        "the logged model (model_id or a models:/m-... source).",
        details={"field": "source"},
    )


def create_model_version(call: Call) -> object:
    """``model-versions/create``: our registration, whichever door it came through."""
    message = _get_request_message(CreateModelVersion())
    tags = {t.key: t.value for t in message.tags}
    _check_tags(set(tags))
    run_id, path = _run_and_path(call, message.source, message.run_id, message.model_id)
    services = call.services
    done = services.lifecycle.register_run(
        call.tenant,
        message.name,
        run_id,
        artifact_path=path,
        description=message.description,
        tags=tags,
        created_by=call.principal.subject,
    )
    number = done.version.version
    return _model_version_answer(call, CreateModelVersion.Response, message.name, number)


def _move(call: Call, name: str, version: str, stage: str, why: str) -> None:
    try:
        call.services.lifecycle.transition_stage(
            call.tenant, name, version, stage, actor=call.principal.subject, reason=why
        )
    except GateFailedError as exc:
        raise GateFailedError(
            f"{exc.message.rstrip('.')}. {_promotion_help(name)}", details=exc.details
        ) from exc


def transition_stage(call: Call) -> object:
    """``model-versions/transition-stage``: a stage move through the gates."""
    message = _get_request_message(TransitionModelVersionStage())
    target = _STAGES.get(message.stage.strip().lower())
    if target is None:
        raise ValidationError(
            f"stage {message.stage!r} must be one of None, Staging, Production, Archived.",
            details={"field": "stage"},
        )
    _move(call, message.name, message.version, target, "MLflow transition-stage")
    return _model_version_answer(
        call, TransitionModelVersionStage.Response, message.name, message.version
    )


def _protected(call: Call, name: str) -> set[str]:
    policy, _ = PolicyStore(call.services.db).effective(call.tenant, name)
    return {a.lower() for a in policy.protected_aliases}


def set_alias(call: Call) -> object:
    """``registered-models/alias`` (POST): a reserved alias is a stage move."""
    message = _get_request_message(SetRegisteredModelAlias())
    alias = message.alias.strip().lower()
    if alias in STAGE_ALIASES:
        _move(call, message.name, message.version, STAGE_ALIASES[alias], f"MLflow @{alias}")
        return _wrap_response(SetRegisteredModelAlias.Response())
    if alias in _protected(call, message.name):
        raise ConflictError(
            f"The alias {message.alias!r} of {message.name!r} is protected by the tenant's "
            f"policy. {_promotion_help(message.name)}",
            details={"alias": message.alias},
        )
    return handlers._set_registered_model_alias()


def delete_alias(call: Call) -> object:
    """``registered-models/alias`` (DELETE): a reserved alias is moved by the lifecycle only."""
    message = _get_request_message(DeleteRegisteredModelAlias())
    alias = message.alias.strip().lower()
    if alias in STAGE_ALIASES or alias in _protected(call, message.name):
        raise ConflictError(
            f"The alias {message.alias!r} of {message.name!r} follows the lifecycle and cannot "
            f"be removed by hand. Roll back with POST /api/v1/models/{message.name}/rollback, "
            f"or move the version with PUT /api/v1/models/{message.name}/stage.",
            details={"alias": message.alias},
        )
    return handlers._delete_registered_model_alias()


def delete_version(call: Call) -> object:
    """``model-versions/delete``: never a production version."""
    message = _get_request_message(DeleteModelVersion())
    call.services.lifecycle.delete_version(
        call.tenant, message.name, message.version, actor=call.principal.subject
    )
    return _wrap_response(DeleteModelVersion.Response())


def delete_model(call: Call) -> object:
    """``registered-models/delete``: refused while a version is in production."""
    message = _get_request_message(DeleteRegisteredModel())
    call.services.lifecycle.delete_model(call.tenant, message.name, actor=call.principal.subject)
    return _wrap_response(DeleteRegisteredModel.Response())


def download_uri(call: Call) -> object:
    """``model-versions/get-download-uri``: the registry's copy of the version's files."""
    message = _get_request_message(GetModelVersionDownloadUri())
    with translated(f"Version {message.version} of {message.name!r}"):
        mv = call.services.backend.client.get_model_version(message.name, message.version)
    copy = (mv.tags or {}).get(TAG_ARTIFACT_URI)
    if not copy:  # registered before the registry kept copies: the run's files
        return handlers._get_model_version_download_uri()
    # The door shows the physical location as mlflow-artifacts:/models/<name>/<version>.
    return _wrap_response(GetModelVersionDownloadUri.Response(artifact_uri=copy))


def create_model(call: Call) -> object:
    """``registered-models/create``, without the service's own tags."""
    _check_tags({t.key for t in _get_request_message(CreateRegisteredModel()).tags})
    return handlers._create_registered_model()


def _guarded(message_class: type, view: str):  # noqa: ANN202 - an op
    def op(call: Call) -> object:
        _check_tags({_get_request_message(message_class()).key})
        return getattr(handlers, view)()

    op.__name__ = view
    return op


OPS = {
    "_create_model_version": create_model_version,
    "_transition_stage": transition_stage,
    "_set_registered_model_alias": set_alias,
    "_delete_registered_model_alias": delete_alias,
    "_delete_model_version": delete_version,
    "_delete_registered_model": delete_model,
    "_create_registered_model": create_model,
    "_get_model_version_download_uri": download_uri,
    "_set_registered_model_tag": _guarded(SetRegisteredModelTag, "_set_registered_model_tag"),
    "_set_model_version_tag": _guarded(SetModelVersionTag, "_set_model_version_tag"),
    "_delete_registered_model_tag": _guarded(
        DeleteRegisteredModelTag, "_delete_registered_model_tag"
    ),
    "_delete_model_version_tag": _guarded(DeleteModelVersionTag, "_delete_model_version_tag"),
}
