"""MLflow's schema: its revision, and creating or upgrading its tables.

These are MLflow's private functions (``mlflow.store.db.utils``); they are what
``mlflow db upgrade`` itself calls. :mod:`matih_ml.store.migrate` runs them.
"""

from __future__ import annotations

from sqlalchemy import Engine


def engine(uri: str) -> Engine:
    """An engine on an MLflow SQL store, made as MLflow makes its own (pool settings)."""
    from mlflow.store.db.utils import create_sqlalchemy_engine

    return create_sqlalchemy_engine(uri)


def current_revision(engine: Engine) -> str | None:
    """The revision MLflow's tables are at (None: no MLflow tables yet)."""
    from mlflow.store.db.utils import _get_schema_version

    return _get_schema_version(engine)


def head_revision() -> str:
    """The revision this MLflow release needs."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def is_empty(engine: Engine) -> bool:
    """Whether the database holds no MLflow tables yet."""
    from mlflow.store.db.utils import _is_empty_database

    return bool(_is_empty_database(engine))


def create_tables(engine: Engine) -> None:
    """Create MLflow's tables, at the head revision, in an empty database."""
    from mlflow.store.db.utils import _initialize_tables

    _initialize_tables(engine)


def upgrade_tables(engine: Engine) -> None:
    """Upgrade MLflow's tables to the head revision (a no-op when they are there)."""
    from mlflow.store.db.utils import _upgrade_db

    _upgrade_db(engine)
