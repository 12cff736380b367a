"""Queries on the lifecycle's tables. Every function works inside the caller's
unit of work and never commits.

Each function given a tenant binds the caller's session to it first
(:func:`~matih_ml.store.tenant_filter.bind_tenant`): a unit of work opened without a
tenant then serves that one, and one of another tenant fails. The explicit tenant
predicates stay, for a caller's session that is unscoped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from matih_ml.store.models import (
    ApprovalRow,
    EvaluationRow,
    GateEvidenceRow,
    ModelLockRow,
    StageHistoryRow,
    VersionStageRow,
)
from matih_ml.store.tenant_filter import bind_tenant


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def insert_if_missing(session: Session, row_cls: type, values: dict[str, Any]) -> bool:
    """Insert a row unless its primary key exists; True when this call inserted it.

    ``SELECT ... FOR UPDATE`` cannot lock a row that does not exist yet, so two
    transactions that both find it missing would both insert: this is the first step,
    the lock the second.
    """
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # RETURNING rather than rowcount: on PostgreSQL every racer saw a truthy rowcount here.
    key = next(iter(row_cls.__table__.primary_key.columns))
    stmt = insert(row_cls).values(**values).on_conflict_do_nothing().returning(key)
    return session.execute(stmt).first() is not None


def aware(when: datetime | None) -> datetime | None:
    """A stored time with its zone (SQLite drops it; all stored times are UTC)."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)


def lock_model(session: Session, tenant_id: str, model: str) -> None:
    """Take the model's lock for the rest of the transaction.

    On PostgreSQL the UPDATE holds the row lock; on SQLite the first write takes the
    database's write lock. Either way a second mover, in this process or another,
    waits here until the first commits. It must be the transaction's first statement
    (on SQLite a read first would make the upgrade to a write fail, not wait).
    """
    bind_tenant(session, tenant_id)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(ModelLockRow)
        .values(tenant_id=tenant_id, model_name=model, moves=0)
        .on_conflict_do_nothing()
    )
    session.execute(
        update(ModelLockRow)
        .where(ModelLockRow.tenant_id == tenant_id, ModelLockRow.model_name == model)
        .values(moves=ModelLockRow.moves + 1)
    )


def stages(session: Session, tenant_id: str, model: str) -> dict[int, str]:
    """The recorded stage of each version of a model."""
    bind_tenant(session, tenant_id)
    rows = session.scalars(
        select(VersionStageRow).where(
            VersionStageRow.tenant_id == tenant_id, VersionStageRow.model_name == model
        )
    )
    return {r.version: r.stage for r in rows}


def set_stage(session: Session, tenant_id: str, model: str, version: int, stage: str) -> None:
    """Record a version's stage."""
    bind_tenant(session, tenant_id)
    row = session.get(VersionStageRow, (tenant_id, model, version))
    if row is None:
        session.add(
            VersionStageRow(
                tenant_id=tenant_id,
                model_name=model,
                version=version,
                stage=stage,
                updated_at=now(),
            )
        )
    else:
        row.stage = stage
        row.updated_at = now()


def forget_versions(
    session: Session, tenant_id: str, model: str, versions: list[int] | None
) -> None:
    """Drop the recorded stages of deleted versions (all of the model's when None).

    The history is kept: it is the record of what served when.
    """
    bind_tenant(session, tenant_id)
    q = delete(VersionStageRow).where(
        VersionStageRow.tenant_id == tenant_id, VersionStageRow.model_name == model
    )
    if versions is not None:
        q = q.where(VersionStageRow.version.in_(versions))
    session.execute(q)


def append_history(
    session: Session,
    tenant_id: str,
    model: str,
    version: int,
    from_stage: str | None,
    to_stage: str,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
    forced: bool,
) -> StageHistoryRow:
    """Append one move to the history."""
    bind_tenant(session, tenant_id)
    row = StageHistoryRow(
        tenant_id=tenant_id,
        model_name=model,
        version=version,
        from_stage=from_stage,
        to_stage=to_stage,
        actor=actor,
        reason=reason,
        evidence=evidence,
        forced=forced,
        at=now(),
    )
    session.add(row)
    session.flush()
    return row


def history(
    session: Session, tenant_id: str, model: str, until: datetime | None = None
) -> list[StageHistoryRow]:
    """A model's moves, oldest first (up to ``until``, when given)."""
    bind_tenant(session, tenant_id)
    q = select(StageHistoryRow).where(
        StageHistoryRow.tenant_id == tenant_id, StageHistoryRow.model_name == model
    )
    if until is not None:
        q = q.where(StageHistoryRow.at <= until)
    return list(session.scalars(q.order_by(StageHistoryRow.id)))


def evaluations(session: Session, tenant_id: str, model: str, version: int) -> list[EvaluationRow]:
    """A version's recorded evaluations, oldest first."""
    bind_tenant(session, tenant_id)
    return list(
        session.scalars(
            select(EvaluationRow)
            .where(
                EvaluationRow.tenant_id == tenant_id,
                EvaluationRow.model_name == model,
                EvaluationRow.version == version,
            )
            .order_by(EvaluationRow.id)
        )
    )


def usable_approval(
    session: Session, tenant_id: str, model: str, version: int
) -> ApprovalRow | None:
    """The newest approved, not yet used approval of a version."""
    bind_tenant(session, tenant_id)
    return session.scalars(
        select(ApprovalRow)
        .where(
            ApprovalRow.tenant_id == tenant_id,
            ApprovalRow.model_name == model,
            ApprovalRow.version == version,
            ApprovalRow.status == "approved",
        )
        .order_by(ApprovalRow.id.desc())
        .limit(1)
    ).first()


def record_gate(
    session: Session,
    tenant_id: str,
    model: str,
    version: int,
    gate: str,
    passed: bool,
    reasons: list[str],
    details: dict[str, Any],
) -> None:
    """Store a gate's outcome as evidence on the version."""
    bind_tenant(session, tenant_id)
    session.add(
        GateEvidenceRow(
            tenant_id=tenant_id,
            model_name=model,
            version=version,
            gate=gate,
            passed=passed,
            reasons=reasons,
            details=details,
            at=now(),
        )
    )


def gate_evidence(
    session: Session, tenant_id: str, model: str, version: int
) -> list[GateEvidenceRow]:
    """A version's gate outcomes, oldest first."""
    bind_tenant(session, tenant_id)
    return list(
        session.scalars(
            select(GateEvidenceRow)
            .where(
                GateEvidenceRow.tenant_id == tenant_id,
                GateEvidenceRow.model_name == model,
                GateEvidenceRow.version == version,
            )
            .order_by(GateEvidenceRow.id)
        )
    )
