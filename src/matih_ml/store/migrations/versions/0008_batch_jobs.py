"""Batch inference jobs: a job's kind, and its progress.

Batch jobs share the training jobs' table, queue and executor: ``kind`` tells them apart
(every existing row is a training job), and ``progress`` holds a running batch job's rows
scored of the total. The tenant's list of one kind is read newest first by an index.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("matih_training_jobs") as table:
        table.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="training")
        )
        table.add_column(sa.Column("progress", sa.JSON, nullable=True))
    op.create_index(
        "ix_matih_training_jobs_tenant_kind",
        "matih_training_jobs",
        ["tenant_id", "kind", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_matih_training_jobs_tenant_kind", table_name="matih_training_jobs")
    with op.batch_alter_table("matih_training_jobs") as table:
        table.drop_column("progress")
        table.drop_column("kind")
