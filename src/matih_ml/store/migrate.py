"""Schema migrations for both stores: MLflow's tables and the service's own.

``matih-ml db upgrade`` runs them (a deploy's migration job), and so does every start
when ``MATIH_AUTO_MIGRATE`` is on (the embedded default). Otherwise a start only
checks, and refuses to serve a schema that is behind.

On PostgreSQL the whole upgrade holds an advisory lock, so replicas that start
together with auto-migrate on take turns instead of racing to create tables.
MLflow's schema functions are private (``mlflow.store.db.utils``); they are what
``mlflow db upgrade`` itself calls, and are wrapped in :mod:`matih_ml.mlflow_adapter.schema`,
which only this module uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from matih_ml.config import Settings
from matih_ml.errors import UnavailableError
from matih_ml.mlflow_adapter import schema
from matih_ml.store.db import (
    TRACKING_VERSION_TABLE,
    VERSION_TABLE,
    Database,
    alembic_config,
    tracking_alembic_config,
    upgrade_tracking,
)

log = logging.getLogger(__name__)

# pg_advisory_lock key: "matih-ml" as 8 bytes, so unrelated applications don't collide.
_LOCK_KEY = int.from_bytes(b"matih-ml", "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class SchemaState:
    """Where one store's schema stands."""

    store: str
    url: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        """True when no migration is pending."""
        return self.current == self.head


class SchemaBehindError(UnavailableError):
    """The database schema is older than this release; ``matih-ml db upgrade`` fixes it."""

    code = "SCHEMA_BEHIND"


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown as its scheme only
        return url.split(":", 1)[0]


def _mlflow_sql_uris(settings: Settings) -> list[str]:
    """MLflow's SQL stores (none when MLflow is a remote server: it migrates itself)."""
    uris = [settings.tracking_uri]
    if settings.registry_uri != settings.tracking_uri:
        uris.append(settings.registry_uri)
    return [u for u in uris if not u.startswith(("http://", "https://", "file:"))]


def _mlflow_engine(uri: str) -> Engine:
    from matih_ml.backend import tune_sql_uri

    return schema.engine(tune_sql_uri(uri))


def _mlflow_state(uri: str) -> SchemaState:
    engine = _mlflow_engine(uri)
    try:
        current = schema.current_revision(engine)
    finally:
        engine.dispose()
    return SchemaState("mlflow", _redacted(uri), current, schema.head_revision())


def _tracking_state(uri: str) -> SchemaState:
    """Our tables in MLflow's tracking database (the metric summary)."""
    head = ScriptDirectory.from_config(tracking_alembic_config()).get_current_head()
    engine = _mlflow_engine(uri)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(
                conn, opts={"version_table": TRACKING_VERSION_TABLE}
            ).get_current_revision()
    finally:
        engine.dispose()
    return SchemaState("matih-tracking", _redacted(uri), current, head or "")


def _service_state(db: Database) -> SchemaState:
    head = ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()
    with db.engine.connect() as conn:
        current = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
    return SchemaState("matih", _redacted(db.url), current, head or "")


def schema_states(settings: Settings, db: Database) -> list[SchemaState]:
    """Where every store's schema stands, without changing anything."""
    try:
        uris = _mlflow_sql_uris(settings)
        states = [_mlflow_state(uri) for uri in uris]
        if settings.tracking_uri in uris:
            states.append(_tracking_state(settings.tracking_uri))
        states.append(_service_state(db))
    except Exception as exc:
        from matih_ml.faults import unavailable

        down = unavailable(exc)
        if down is None:
            raise
        raise down from exc
    return states


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    """Hold a cluster-wide lock on PostgreSQL; elsewhere, nothing to hold."""
    if db.engine.dialect.name != "postgresql":
        yield
        return
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            conn.commit()


def upgrade(settings: Settings, db: Database) -> list[SchemaState]:
    """Bring MLflow's schema and the service's to their heads (idempotent).

    Returns:
        Each store's state after the upgrade.
    """
    with _migration_lock(db):
        for uri in _mlflow_sql_uris(settings):
            engine = _mlflow_engine(uri)
            try:
                if schema.is_empty(engine):
                    log.info("creating MLflow's tables in %s", _redacted(uri))
                    schema.create_tables(engine)
                else:
                    schema.upgrade_tables(engine)
                if uri == settings.tracking_uri:
                    # The chart summary's tables sit beside MLflow's metric points
                    # (mlflow_adapter.rollup), with a migration chain of their own.
                    upgrade_tracking(engine)
            finally:
                engine.dispose()
        db.upgrade()
    return schema_states(settings, db)


def require_current(settings: Settings, db: Database) -> None:
    """Refuse to start on a schema that is behind.

    Raises:
        SchemaBehindError: Naming the stores that need ``matih-ml db upgrade``.
    """
    behind = [s for s in schema_states(settings, db) if not s.up_to_date]
    if behind:
        names = ", ".join(f"{s.store} ({s.current or 'empty'} -> {s.head})" for s in behind)
        raise SchemaBehindError(
            f"The database schema is behind: {names}. Run `matih-ml db upgrade`, "
            "or start with MATIH_AUTO_MIGRATE=1.",
            details={"stores": [s.store for s in behind]},
        )
