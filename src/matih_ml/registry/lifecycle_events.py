"""The events the lifecycle publishes, written in the transaction of the move itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from matih_ml.events.catalog import EventType
from matih_ml.events.outbox import EventLog
from matih_ml.registry.metadata import Stage


def stage_changed(
    events: EventLog,
    s: Session,
    tenant_id: str,
    name: str,
    number: str,
    from_stage: Stage | None,
    to_stage: Stage,
    *,
    actor: str,
    reason: str,
    forced: bool,
    evidence: dict[str, Any],
    replaced: str | None = None,
) -> None:
    """``MODEL_STAGE_CHANGED``. (``MODEL_DEPLOYED`` comes from serving, when the version
    answers its first request: :mod:`matih_ml.serving.service`.)"""
    events.emit(
        s,
        tenant_id,
        EventType.MODEL_STAGE_CHANGED,
        name,
        {
            "model": name,
            "version": number,
            "from_stage": from_stage.value if from_stage else None,
            "to_stage": to_stage.value,
            "actor": actor,
            "reason": reason,
            "forced": forced,
            "evidence": evidence,
        },
    )
