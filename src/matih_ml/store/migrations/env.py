"""Alembic environment for the service's tables (run through matih_ml.store.db)."""

from alembic import context

from matih_ml.store.db import VERSION_TABLE
from matih_ml.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
