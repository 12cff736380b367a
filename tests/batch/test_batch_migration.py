"""Migration 0008: existing jobs are training jobs, with no progress."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text

from matih_ml.store.db import Database, alembic_config


def _upgrade(db: Database, revision: str) -> None:
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_existing_jobs_become_training_jobs(engine, tmp_path, request) -> None:
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'matih.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    db = Database(url)
    _upgrade(db, "0007")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO matih_training_jobs (job_id, tenant_id, name, model_name, spec, "
                "status, cancel_requested, created_by, created_at) VALUES ('job_0123456789abcdef',"
                " 'acme', 'nightly', 'churn', '{}', 'succeeded', false, 'cli', :at)"
            ),
            {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    _upgrade(db, "head")
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT kind, progress FROM matih_training_jobs")).one()
    assert tuple(row) == ("training", None)
