"""Serving: traffic modes, shadow and A/B samples, served versions, monitoring episodes.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "matih_serving_configs",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("ab_share", sa.Float, nullable=False, server_default="0"),
        sa.Column("updated_by", sa.String(256), nullable=False, server_default=""),
        sa.Column("updated_at", _TZ, nullable=False),
    )
    op.create_table(
        "matih_serving_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("production_version", sa.Integer, nullable=True),
        sa.Column("staging_version", sa.Integer, nullable=False),
        sa.Column("arm", sa.String(16), nullable=True),
        sa.Column("prediction_a", sa.JSON, nullable=True),
        sa.Column("prediction_b", sa.JSON, nullable=True),
        sa.Column("latency_a_ms", sa.Float, nullable=True),
        sa.Column("latency_b_ms", sa.Float, nullable=True),
        sa.Column("error_a", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("error_b", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("at", _TZ, nullable=False),
    )
    op.create_index(
        "ix_matih_serving_samples_model",
        "matih_serving_samples",
        ["tenant_id", "model_name", "staging_version"],
    )
    op.create_table(
        "matih_serving_state",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("target", sa.String(80), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", _TZ, nullable=False),
    )
    op.create_table(
        "matih_monitor_episodes",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("check", sa.String(32), primary_key=True),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("changed_at", _TZ, nullable=False),
        sa.Column("episodes", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    for table in (
        "matih_monitor_episodes",
        "matih_serving_state",
        "matih_serving_samples",
        "matih_serving_configs",
    ):
        op.drop_table(table)
