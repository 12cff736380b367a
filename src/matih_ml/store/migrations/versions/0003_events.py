"""Events: the outbox, per-tenant sequences, webhooks and deliveries.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "matih_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("payload", sa.Text, nullable=True),
    )
    op.create_index(
        "ux_matih_events_tenant_seq", "matih_events", ["tenant_id", "sequence"], unique=True
    )
    op.create_index("ix_matih_events_state_created", "matih_events", ["state", "created_at"])
    op.create_table(
        "matih_event_sequences",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("last", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "matih_webhooks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("secret_encrypted", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    )
    op.create_index("ix_matih_webhooks_tenant", "matih_webhooks", ["tenant_id"])
    op.create_table(
        "matih_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("order_key", sa.String(240), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _TZ, nullable=False),
        sa.Column("lease_until", _TZ, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("delivered_at", _TZ, nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
    )
    op.create_index("ix_matih_deliveries_due", "matih_deliveries", ["state", "next_attempt_at"])
    op.create_index(
        "ix_matih_deliveries_order",
        "matih_deliveries",
        ["sink", "order_key", "state", "sequence"],
    )
    op.create_index("ix_matih_deliveries_event", "matih_deliveries", ["event_id"])


def downgrade() -> None:
    for table in ("matih_deliveries", "matih_webhooks", "matih_event_sequences", "matih_events"):
        op.drop_table(table)
