"""API keys get an owner, and key names become unique per tenant.

Existing keys are owned by their name (four eyes compared names until now, so the
same approvals pass and fail as before). Where a tenant holds several keys of one
name (``admin-key`` was the default), the oldest keeps it and the others get their
key id appended; their owner stays the old name.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_keys = sa.table(
    "matih_api_keys",
    sa.column("key_id", sa.String),
    sa.column("tenant_id", sa.String),
    sa.column("name", sa.String),
    sa.column("owner", sa.String),
    sa.column("created_at", sa.DateTime),
)


def upgrade() -> None:
    # batch: SQLite alters a table by copying it.
    with op.batch_alter_table("matih_api_keys") as batch:
        batch.add_column(sa.Column("owner", sa.String(256), nullable=False, server_default=""))
    op.execute(_keys.update().values(owner=_keys.c.name))
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_keys.c.key_id, _keys.c.tenant_id, _keys.c.name).order_by(
            _keys.c.tenant_id, _keys.c.name, _keys.c.created_at, _keys.c.key_id
        )
    ).all()
    seen: set[tuple[str, str]] = set()
    for key_id, tenant_id, name in rows:
        if (tenant_id, name) in seen:
            conn.execute(
                _keys.update().where(_keys.c.key_id == key_id).values(name=f"{name[:111]}-{key_id}")
            )
        seen.add((tenant_id, name))
    with op.batch_alter_table("matih_api_keys") as batch:
        batch.create_unique_constraint("uq_matih_api_keys_tenant_name", ["tenant_id", "name"])


def downgrade() -> None:
    with op.batch_alter_table("matih_api_keys") as batch:
        batch.drop_constraint("uq_matih_api_keys_tenant_name", type_="unique")
        batch.drop_column("owner")
