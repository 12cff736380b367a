"""The service database: engine, migrations, and one unit of work.

By default the service's tables live in the same database as MLflow's, with
their own Alembic version table (``matih_alembic_version``), so the two never
step on each other's migrations.

Every unit of work is a tenant's, or says that it is not: the tenant filter
(:mod:`matih_ml.store.tenant_filter`) confines each session to its tenant's rows and
fails closed when it has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from matih_ml.store.tenant_filter import TenantSession, scope_info

VERSION_TABLE = "matih_alembic_version"
# Our tables inside MLflow's tracking database (the metric summary) have a chain of
# their own, with its own version table there.
TRACKING_VERSION_TABLE = "matih_tracking_alembic_version"
CONNECT_TIMEOUT_S = 5
_MIGRATIONS = Path(__file__).parent / "migrations"
_TRACKING_MIGRATIONS = Path(__file__).parent / "tracking_migrations"


def _sqlalchemy_url(url: str) -> str:
    # MLflow accepts "postgresql://" for psycopg2; we ship psycopg 3.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def alembic_config(url: str) -> Config:
    """Alembic's configuration for the service's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection_url"] = url
    return cfg


def tracking_alembic_config() -> Config:
    """Alembic's configuration for our tables in MLflow's tracking database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_TRACKING_MIGRATIONS))
    return cfg


def upgrade_tracking(engine: Engine) -> None:
    """Apply every pending migration of our tables in MLflow's tracking database."""
    cfg = tracking_alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """An engine and a session factory for the service's tables.

    Args:
        url: A SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = _sqlalchemy_url(url)
        connect_args = {}
        if self.url.startswith("postgresql"):
            # A database that is down fails a request in seconds instead of hanging it.
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        self.engine: Engine = create_engine(self.url, pool_pre_ping=True, connect_args=connect_args)
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, class_=TenantSession, expire_on_commit=False)

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent)."""
        cfg = alembic_config(self.url)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def uow(self, *, tenant: str | None = None) -> Iterator[Session]:
        """One unit of work of a tenant: commits on success, rolls back on error, always
        closes.

        Stores never commit on their own; everything in the block is one transaction.
        Every ORM statement in it sees and writes the tenant's rows only.

        Args:
            tenant: The tenant. None: the tenant the first store helper given the
                session binds (:func:`~matih_ml.store.tenant_filter.bind_tenant`), else
                the one bound to the context (:func:`~matih_ml.tenancy.tenant_scope`);
                with neither, the first ORM statement raises
                :class:`~matih_ml.store.tenant_filter.TenantScopeError`.
        """
        with self._unit(scope_info(tenant=tenant)) as session:
            yield session

    @contextmanager
    def unscoped(self) -> Iterator[Session]:
        """A unit of work over every tenant's rows, with no tenant filter.

        Only for the paths that work across tenants on purpose: the event dispatcher and
        replays, the job executor's bookkeeping, the reconciler's intents, the stage
        projector's queue, serving's preload, and an API key's lookup before its tenant
        is known. Each statement there filters by tenant itself where it must.
        """
        with self._unit(scope_info(unscoped=True)) as session:
            yield session

    @contextmanager
    def _unit(self, info: dict[str, Any]) -> Iterator[Session]:
        session = self._sessions(info=info)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=60000")
    # Readers (API key checks) go on while a stage move holds the write lock.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
