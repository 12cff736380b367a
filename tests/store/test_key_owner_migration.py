"""Migration 0006: existing keys get an owner (their name), and duplicate names a suffix."""

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from matih_ml.store.db import Database, alembic_config


def _upgrade(db: Database, revision: str) -> None:
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_existing_keys_are_owned_by_their_name_and_duplicates_are_renamed(
    engine, tmp_path, request
) -> None:
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'matih.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    db = Database(url)
    _upgrade(db, "0005")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [  # two tenants; acme has two keys called admin-key (the old default)
        ("aaaaaaaaaaaaaaaa", "acme", "admin-key", start),
        ("bbbbbbbbbbbbbbbb", "acme", "admin-key", start + timedelta(days=1)),
        ("cccccccccccccccc", "acme", "ci", start),
        ("dddddddddddddddd", "globex", "admin-key", start),
    ]
    with db.engine.begin() as conn:
        for key_id, tenant, name, at in rows:
            conn.execute(
                text(
                    "INSERT INTO matih_api_keys (key_id, tenant_id, name, role, salt, "
                    "secret_hash, created_at, created_by) VALUES (:k, :t, :n, 'admin', 's', "
                    "'h', :at, 'cli')"
                ),
                {"k": key_id, "t": tenant, "n": name, "at": at},
            )
    _upgrade(db, "head")
    with db.engine.connect() as conn:
        got = conn.execute(
            text("SELECT key_id, name, owner FROM matih_api_keys ORDER BY key_id")
        ).all()
    assert [tuple(r) for r in got] == [
        ("aaaaaaaaaaaaaaaa", "admin-key", "admin-key"),  # the oldest keeps the name
        ("bbbbbbbbbbbbbbbb", "admin-key-bbbbbbbbbbbbbbbb", "admin-key"),
        ("cccccccccccccccc", "ci", "ci"),
        ("dddddddddddddddd", "admin-key", "admin-key"),
    ]
    # From here on the database refuses a second name in a tenant.
    with pytest.raises(IntegrityError, match=r"(?i)unique"), db.engine.begin() as conn:
        conn.execute(
            text("UPDATE matih_api_keys SET name = 'ci' WHERE key_id = :k"), {"k": "a" * 16}
        )
    db.dispose()
