"""Run inputs: the datasets a run read, indexed by digest and by URI for the lineage
query (``GET /api/v1/lineage``). MLflow keeps the same inputs on the run (its
``datasets`` and ``inputs`` tables); this is the tenant's index over them.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matih_run_inputs",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("uri", sa.String(1000), nullable=False),
        sa.Column("source_type", sa.String(36), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_matih_run_inputs_digest", "matih_run_inputs", ["tenant_id", "digest"])
    op.create_index("ix_matih_run_inputs_uri", "matih_run_inputs", ["tenant_id", "uri"])


def downgrade() -> None:
    op.drop_index("ix_matih_run_inputs_uri", table_name="matih_run_inputs")
    op.drop_index("ix_matih_run_inputs_digest", table_name="matih_run_inputs")
    op.drop_table("matih_run_inputs")
