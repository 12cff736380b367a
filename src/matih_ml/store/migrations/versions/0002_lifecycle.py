"""Lifecycle: locks, stages, history, policies, evaluations, approvals, gate evidence.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "matih_model_locks",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("moves", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "matih_version_stages",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
    )
    op.create_table(
        "matih_stage_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("at", _TZ, nullable=False),
    )
    op.create_index(
        "ix_matih_stage_history_model", "matih_stage_history", ["tenant_id", "model_name", "id"]
    )
    op.create_table(
        "matih_policies",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True, server_default=""),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False, server_default=""),
    )
    op.create_table(
        "matih_evaluations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("notes", sa.Text, nullable=False, server_default=""),
        sa.Column("recorded_by", sa.String(256), nullable=False),
        sa.Column("at", _TZ, nullable=False),
    )
    op.create_index(
        "ix_matih_evaluations_version", "matih_evaluations", ["tenant_id", "model_name", "version"]
    )
    op.create_table(
        "matih_approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(256), nullable=False),
        sa.Column("requested_at", _TZ, nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("decided_by", sa.String(256), nullable=True),
        sa.Column("decided_at", _TZ, nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_matih_approvals_tenant_status", "matih_approvals", ["tenant_id", "status"])
    op.create_table(
        "matih_gate_evidence",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("gate", sa.String(32), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("at", _TZ, nullable=False),
    )
    op.create_index(
        "ix_matih_gate_evidence_version",
        "matih_gate_evidence",
        ["tenant_id", "model_name", "version"],
    )


def downgrade() -> None:
    for table in (
        "matih_gate_evidence",
        "matih_approvals",
        "matih_evaluations",
        "matih_policies",
        "matih_stage_history",
        "matih_version_stages",
        "matih_model_locks",
    ):
        op.drop_table(table)
