"""Stage projections: MLflow's stage field and aliases are written after our commit.

A row says "this model's stages changed in our store and MLflow has not been brought
in line yet". It is written in the transaction that moves a stage, and deleted once
MLflow shows the same; ``seq`` tells a projection that started before a newer move
from one that saw it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matih_stage_projections",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("matih_stage_projections")
