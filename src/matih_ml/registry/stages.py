"""The stage machine's rules, and how a stage is read off MLflow's projection."""

from __future__ import annotations

from typing import Any

from mlflow.entities.model_registry import ModelVersion

from matih_ml.errors import ValidationError
from matih_ml.registry.metadata import MLFLOW_STAGE, TAG_STAGE, Stage

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
