"""Training jobs, their logs, and the per-tenant submission lock.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "matih_training_jobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", _TZ, nullable=True),
        sa.Column("parent_run_id", sa.String(32), nullable=True),
    )
    op.create_index(
        "ix_matih_training_jobs_tenant", "matih_training_jobs", ["tenant_id", "created_at"]
    )
    op.create_index(
        "ix_matih_training_jobs_status", "matih_training_jobs", ["status", "created_at"]
    )
    op.create_table(
        "matih_training_job_logs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )
    op.create_index("ix_matih_training_job_logs_job", "matih_training_job_logs", ["job_id", "seq"])
    op.create_table(
        "matih_training_quota",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("submits", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    for table in ("matih_training_quota", "matih_training_job_logs", "matih_training_jobs"):
        op.drop_table(table)
