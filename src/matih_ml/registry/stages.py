"""The stage machine's rules, and how a stage is read off and written onto MLflow."""

from __future__ import annotations

import warnings
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from matih_ml.errors import ValidationError
from matih_ml.mlflow_errors import translated
from matih_ml.registry.metadata import MLFLOW_STAGE, STAGE_ALIAS, TAG_STAGE, Stage

# The basic moves; "any stage back to development" is added in allowed_targets().
_FORWARD = {
    Stage.DEVELOPMENT: {Stage.STAGING},
    Stage.STAGING: {Stage.PRODUCTION},
    Stage.PRODUCTION: {Stage.ARCHIVED},
    Stage.ARCHIVED: set(),
}
_MLFLOW_TO_STAGE = {v: k for k, v in MLFLOW_STAGE.items()}


def allowed_targets(current: Stage) -> set[Stage]:
    """The stages a version in ``current`` may move to."""
    targets = set(_FORWARD[current])
    if current is not Stage.DEVELOPMENT:
        targets.add(Stage.DEVELOPMENT)
    return targets


def parse_stage(value: Any) -> Stage:
    """Return the :class:`Stage` named by ``value`` (case-insensitive).

    Raises:
        ValidationError: If it names no stage.
    """
    try:
        return Stage(str(value).lower())
    except ValueError:
        allowed = ", ".join(s.value for s in Stage)
        raise ValidationError(
            f"stage {value!r} is not one of: {allowed}.", details={"field": "stage"}
        ) from None


def stage_of(mv: ModelVersion) -> Stage:
    """The stage MLflow's mirror shows for a version (its tag, else MLflow's stage field)."""
    tag = (mv.tags or {}).get(TAG_STAGE)
    if tag in Stage._value2member_map_:
        return Stage(tag)
    return _MLFLOW_TO_STAGE.get(mv.current_stage, Stage.DEVELOPMENT)


def write_stage(client: MlflowClient, name: str, mv: ModelVersion, target: Stage) -> None:
    """Write a stage onto MLflow: the version tag, MLflow's deprecated stage field (so
    ``models:/NAME/Production`` loads) and the ``@staging``/``@production`` aliases."""
    previous = stage_of(mv)
    with translated(f"model {name!r} version {mv.version}"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.set_model_version_tag(name, mv.version, TAG_STAGE, target.value)
        client.transition_model_version_stage(
            name, mv.version, MLFLOW_STAGE[target], archive_existing_versions=False
        )
        old_alias = STAGE_ALIAS.get(previous)
        if old_alias and old_alias in (mv.aliases or []):
            client.delete_registered_model_alias(name, old_alias)
        new_alias = STAGE_ALIAS.get(target)
        if new_alias:
            client.set_registered_model_alias(name, new_alias, mv.version)
