"""The metric summary tables: a metric's history summarised at write time.

For each run and key, per block of 64 steps (level 1) and of 4,096 steps (level 2), the
count, sum, min and max of the values and the first and last step; and per series the
latest point the summary has seen (``complete`` = 0: points were stored before the
summary knew the series, and a reader rebuilds it). See ``mlflow_adapter.rollup``.

Until this revision the tables were created by code at start-up, with the same
columns; a database that has them already keeps them and is only stamped.

Revision ID: t0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "t0001"
down_revision = None
branch_labels = None
depends_on = None

ROLLUPS = "matih_metric_rollups"
SERIES = "matih_metric_series"


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if ROLLUPS not in existing:
        op.create_table(
            ROLLUPS,
            sa.Column("run_uuid", sa.String(32), primary_key=True),
            sa.Column("key", sa.String(250), primary_key=True),
            sa.Column("level", sa.SmallInteger, primary_key=True),
            sa.Column("block", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("points", sa.BigInteger, nullable=False),
            sa.Column("value_sum", sa.Double, nullable=False),
            sa.Column("min_value", sa.Double, nullable=False),
            sa.Column("max_value", sa.Double, nullable=False),
            sa.Column("min_step", sa.BigInteger, nullable=False),
            sa.Column("max_step", sa.BigInteger, nullable=False),
            # A clustered table on SQLite: a chart reads blocks in key order.
            sqlite_with_rowid=False,
        )
    if SERIES not in existing:
        op.create_table(
            SERIES,
            sa.Column("run_uuid", sa.String(32), primary_key=True),
            sa.Column("key", sa.String(250), primary_key=True),
            sa.Column("complete", sa.SmallInteger, nullable=False),
            sa.Column("step", sa.BigInteger, nullable=True),
            sa.Column("timestamp", sa.BigInteger, nullable=True),
            sa.Column("value", sa.Double, nullable=True),
        )


def downgrade() -> None:
    op.drop_table(SERIES)
    op.drop_table(ROLLUPS)
