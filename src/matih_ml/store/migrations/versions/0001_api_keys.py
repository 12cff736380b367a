"""API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matih_api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_matih_api_keys_tenant", "matih_api_keys", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_matih_api_keys_tenant", "matih_api_keys")
    op.drop_table("matih_api_keys")
