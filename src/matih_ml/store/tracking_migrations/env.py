"""Alembic environment for our tables inside MLflow's tracking database.

The chart summary's tables (``mlflow_adapter.rollup``) must commit with MLflow's metric
points, so they live beside MLflow's tables, with their own version table so that
neither MLflow's migrations nor the service database's chain step on them.
"""

from alembic import context

from matih_ml.store.db import TRACKING_VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=TRACKING_VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
