"""The service database: engine, migrations, and one unit of work.

By default the service's tables live in the same database as MLflow's, with
their own Alembic version table (``matih_alembic_version``), so the two never
step on each other's migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

VERSION_TABLE = "matih_alembic_version"
CONNECT_TIMEOUT_S = 5
_MIGRATIONS = Path(__file__).parent / "migrations"


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
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent)."""
        cfg = alembic_config(self.url)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def uow(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on error, always closes.

        Stores never commit on their own; everything in the block is one transaction.
        """
        session = self._sessions()
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
