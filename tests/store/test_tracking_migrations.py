"""Our tables in MLflow's tracking database come from a migration chain of their own:
`db upgrade` creates them, `db status` reports them, and a database whose tables were
made by the old start-up code is stamped without losing a row."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text

from matih_ml.mlflow_adapter import rollup
from matih_ml.store import migrate
from matih_ml.store.db import TRACKING_VERSION_TABLE, Database, upgrade_tracking


def test_db_upgrade_creates_the_summary_tables_and_reports_them(isolated_settings) -> None:
    settings = isolated_settings
    db = Database(settings.database_url)
    try:
        before = {s.store: s for s in migrate.schema_states(settings, db)}
        assert before["matih-tracking"].current is None
        assert not before["matih-tracking"].up_to_date

        after = {s.store: s for s in migrate.upgrade(settings, db)}
        assert after["matih-tracking"].up_to_date
        assert after["matih-tracking"].head == "t0001"
        engine = create_engine(settings.tracking_uri)
        names = set(inspect(engine).get_table_names())
        assert {rollup.ROLLUPS, rollup.SERIES, TRACKING_VERSION_TABLE} <= names
        assert rollup.tables_ready(engine)
        engine.dispose()
        # Idempotent: a second upgrade changes nothing and fails nothing.
        again = {s.store: s for s in migrate.upgrade(settings, db)}
        assert all(s.up_to_date for s in again.values())
    finally:
        db.engine.dispose()


def test_tables_made_by_the_old_start_up_code_are_stamped_with_their_rows(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:  # what rollup.ensure_tables used to run at start-up
        conn.execute(
            text(
                f"CREATE TABLE {rollup.ROLLUPS} (run_uuid VARCHAR(32) NOT NULL, key VARCHAR(250)"
                " NOT NULL, level SMALLINT NOT NULL, block BIGINT NOT NULL, points BIGINT NOT"
                " NULL, value_sum DOUBLE PRECISION NOT NULL, min_value DOUBLE PRECISION NOT"
                " NULL, max_value DOUBLE PRECISION NOT NULL, min_step BIGINT NOT NULL,"
                " max_step BIGINT NOT NULL, PRIMARY KEY (run_uuid, key, level, block))"
                " WITHOUT ROWID"
            )
        )
        conn.execute(
            text(
                f"CREATE TABLE {rollup.SERIES} (run_uuid VARCHAR(32) NOT NULL, key VARCHAR(250)"
                " NOT NULL, complete SMALLINT NOT NULL, step BIGINT, timestamp BIGINT, value"
                " DOUBLE PRECISION, PRIMARY KEY (run_uuid, key))"
            )
        )
        conn.execute(text(f"INSERT INTO {rollup.SERIES} VALUES ('r', 'loss', 1, 3, 4, 0.5)"))

    upgrade_tracking(engine)

    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT version_num FROM {TRACKING_VERSION_TABLE}")).all() == [
            ("t0001",)
        ]
        assert conn.execute(text(f"SELECT key, step FROM {rollup.SERIES}")).all() == [("loss", 3)]
    engine.dispose()


def test_a_database_nobody_migrated_has_no_summary_and_says_so(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    assert rollup.tables_ready(engine) is False
    assert rollup.ROLLUPS not in inspect(engine).get_table_names()  # nothing created
    engine.dispose()
