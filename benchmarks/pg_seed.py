"""Databases and data for ``bench_pg.py``: PostgreSQL databases of its own (created with
unique names, dropped at the end), and the large seeds written straight into the tables.

None of the seeding is measured: a million models or ten million points through the API
would take hours. It writes the rows the API would have written: MLflow's rows (and, for
the history, the chart summary built by the service's own rebuild).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator

import psycopg

ADMIN_URL = os.environ.get(
    "MATIH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class Databases:
    """PostgreSQL databases created for one run, every one dropped by :meth:`drop_all`."""

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin_url = admin_url
        self.prefix = f"matih_bench_{uuid.uuid4().hex[:10]}"
        self.names: list[str] = []

    def create(self, suffix: str) -> str:
        """A fresh database; returns its SQLAlchemy URL (psycopg 3)."""
        name = f"{self.prefix}_{suffix}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.url(name, "postgresql+psycopg")

    def url(self, name: str, scheme: str = "postgresql") -> str:
        base = self.admin_url.rsplit("/", 1)[0].split("://", 1)[1]
        return f"{scheme}://{base}/{name}"

    def libpq(self, sqlalchemy_url: str) -> str:
        """The psycopg (libpq) form of one of these databases' URLs."""
        return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://")

    def drop_all(self) -> None:
        """Drop every database this run created (connections closed by force)."""
        if not self.names:
            return
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
            for name in self.names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.clear()


@contextlib.contextmanager
def seeding(url: str) -> Iterator[psycopg.Connection]:
    """A connection for a seed: foreign-key triggers off for this session (the seed is
    consistent by construction), committed at the end."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET maintenance_work_mem = '256MB'")
        yield conn
        conn.commit()


def seed_models(url: str, roots: dict[str, str], models: int) -> float:
    """``models`` registered models per tenant (workspace), each with version 1 and its two
    matih tags, as ``bench_registry.py`` writes them; returns the seconds it took."""
    t = time.perf_counter()
    now = int(time.time() * 1000)
    with seeding(url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO workspaces (name, default_artifact_root) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                list(roots.items()),
            )
        grid = (
            "FROM unnest(%(ws)s::text[]) AS w(ws), "
            "generate_series(0, %(m)s - 1) AS m, LATERAL (SELECT 'model-' || lpad(m::text, 5, '0') "
            "AS name) AS n"
        )
        args = {"ws": list(roots), "m": models, "now": now}
        conn.execute(
            "INSERT INTO registered_models (workspace, name, creation_time, last_updated_time, "
            f"description) SELECT ws, name, %(now)s, %(now)s, '' {grid}",
            args,
        )
        conn.execute(
            "INSERT INTO model_versions (workspace, name, version, creation_time, "
            "last_updated_time, description, current_stage, source, status) "
            f"SELECT ws, name, 1, %(now)s, %(now)s, '', 'None', 's3://b/m', 'READY' {grid}",
            args,
        )
        conn.execute(
            "INSERT INTO model_version_tags (workspace, name, version, key, value) "
            f"SELECT ws, name, 1, k.key, k.value {grid} CROSS JOIN (VALUES "
            "('matih.stage', 'development'), ('matih.framework', 'sklearn')) AS k(key, value)",
            args,
        )
    _analyze(url, "registered_models", "model_versions", "model_version_tags", "workspaces")
    return time.perf_counter() - t


def seed_points_pg(url: str, run_id: str, key: str, points: int) -> float:
    """``points`` points of one series (steps 0..n-1), and its ``latest_metrics`` row;
    returns the seconds it took."""
    t = time.perf_counter()
    with seeding(url) as conn:
        conn.execute(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "SELECT %(k)s, 1.0 / (i + 1), 1000 + i, %(r)s, i, false "
            "FROM generate_series(0, %(n)s - 1) AS i",
            {"k": key, "r": run_id, "n": points},
        )
        _latest_pg(conn, run_id, key, points)
    _analyze(url, "metrics", "latest_metrics")
    return time.perf_counter() - t


def _latest_pg(conn: psycopg.Connection, run_id: str, key: str, points: int) -> None:
    last = points - 1
    conn.execute(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
        "VALUES (%s, %s, %s, %s, false, %s)",
        (key, 1.0 / points, 1000 + last, last, run_id),
    )


def seed_points_sqlite(path: str, run_id: str, key: str, points: int) -> float:
    """As :func:`seed_points_pg`, into an SQLite store's file."""
    t = time.perf_counter()
    conn = sqlite3.connect(path, timeout=60)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MB
        with conn:
            conn.execute(
                "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                "SELECT ?, 1.0 / (i + 1), 1000 + i, ?, i, 0 FROM s",
                (points - 1, key, run_id),
            )
            last = points - 1
            conn.execute(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                (key, 1.0 / points, 1000 + last, last, run_id),
            )
    finally:
        conn.close()
    return time.perf_counter() - t


def _analyze(url: str, *tables: str) -> None:
    # A live database's statistics follow its growth (autovacuum); a seed's are made now.
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"ANALYZE {table}")
    checkpoint()


def checkpoint(admin_url: str = ADMIN_URL) -> None:
    """Flush the WAL a seed or a measurement wrote (a superuser's ``CHECKPOINT``; skipped
    without the right), so that the next measurement does not pay for it."""
    with (
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
        psycopg.connect(admin_url, autocommit=True) as conn,
    ):
        conn.execute("CHECKPOINT")
