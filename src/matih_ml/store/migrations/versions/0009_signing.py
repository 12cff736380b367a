"""Model signing: each tenant's signing keys, and versions whose files failed verification.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matih_signing_keys",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("key_id", sa.String(80), primary_key=True),
        sa.Column("public_pem", sa.Text, nullable=False),
        sa.Column("private_enc", sa.Text, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "matih_integrity_failures",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("matih_integrity_failures")
    op.drop_table("matih_signing_keys")
