"""The bulk writer's COPY path on PostgreSQL (psycopg 3) writes what its executemany path
writes, point for point and block for block, and a re-sent batch, which COPY cannot skip,
still stores each point once and counts it once in the chart summary."""

from __future__ import annotations

import math

import pytest
from mlflow.entities import Metric
from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql import psycopg2

from conftest import embedded_settings
from matih_ml.mlflow_adapter import bulk, rollup
from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
from matih_ml.mlflow_adapter.downsample import downsample
from matih_ml.mlflow_adapter.stores import copies, sql_engine
from matih_ml.tenancy import tenant_scope

TENANT = "acme"


@pytest.fixture
def pg_services(tmp_path, postgres_database):
    from matih_ml.services import build_services

    settings = embedded_settings(tmp_path).model_copy(
        update={"tracking_uri_env": postgres_database, "auto_migrate_env": True}
    )
    services = build_services(settings)
    yield services
    services.db.dispose()


class Spy:
    """Counts the calls of the writer's two point paths and of the summary's upserts."""

    def __init__(self, monkeypatch) -> None:
        self.calls: dict[str, int] = {}
        for module, name in (
            (bulk, "_copy_points"),
            (bulk, "_insert_points"),
            (rollup, "_copy_upsert"),
        ):
            self._wrap(monkeypatch, module, name)

    def _wrap(self, monkeypatch, module, name: str) -> None:
        real = getattr(module, name)

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    def take(self) -> dict[str, int]:
        calls, self.calls = self.calls, {}
        return calls


def _points(n: int, keys: str = "abc", first: int = 0) -> list[tuple[str, float, int, int]]:
    # Values that are not round in binary: a text COPY must carry every bit of them.
    return [(k, (i + 1) / 7 + len(k), 1_000 + i, first + i) for i in range(n) for k in keys]


def _rows(engine, run_id: str) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        args = {"r": run_id}
        return {
            "metrics": [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT key, value, timestamp, step, is_nan FROM metrics "
                        "WHERE run_uuid = :r ORDER BY key, step, timestamp, value"
                    ),
                    args,
                )
            ],
            "latest": [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT key, value, timestamp, step, is_nan FROM latest_metrics "
                        "WHERE run_uuid = :r ORDER BY key"
                    ),
                    args,
                )
            ],
            "summary": [
                tuple(r)
                for r in conn.execute(
                    text(
                        f"SELECT key, level, block, points, value_sum, min_value, max_value, "
                        f"min_step, max_step FROM {rollup.ROLLUPS} WHERE run_uuid = :r "
                        "ORDER BY key, level, block"
                    ),
                    args,
                )
            ],
            "series": [
                tuple(r)
                for r in conn.execute(
                    text(
                        f"SELECT key, complete, step, timestamp, value FROM {rollup.SERIES} "
                        "WHERE run_uuid = :r ORDER BY key"
                    ),
                    args,
                )
            ],
        }


def _same_summary(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b, strict=True):
        assert x[:4] == y[:4] and x[5:] == y[5:]
        assert math.isclose(x[4], y[4], rel_tol=1e-12)


def _rebuilt(engine, run_id: str) -> list[tuple]:
    for key in {r[0] for r in _rows(engine, run_id)["metrics"]}:
        rollup.rebuild(engine, run_id, key)
    return _rows(engine, run_id)["summary"]


def test_copy_is_used_on_psycopg_3_only(tmp_path) -> None:
    assert copies(create_engine("postgresql+psycopg://u@h/db").dialect)
    assert not copies(psycopg2.dialect())
    assert not copies(create_engine(f"sqlite:///{tmp_path / 'x.db'}").dialect)


@pytest.mark.postgres
def test_copy_writes_what_executemany_writes(pg_services, monkeypatch) -> None:
    client = pg_services.backend.client
    engine = sql_engine(client)
    by_copy = pg_services.runs.create_run(TENANT, "copy").info.run_id
    by_rows = pg_services.runs.create_run(TENANT, "rows").info.run_id
    batches = [_points(3_000), _points(500, first=5_000), _points(10, keys="bd", first=9_000)]
    spy = Spy(monkeypatch)
    with tenant_scope(TENANT):
        writer = BulkMetricWriter(client)
        for batch in batches:
            writer.write(by_copy, batch)
        assert spy.take() == {"_copy_points": 3, "_copy_upsert": 3}
        # The same batches the other way: executemany for the points and the blocks.
        monkeypatch.setattr(bulk, "copies", lambda dialect: False)
        monkeypatch.setattr(rollup, "copies", lambda dialect: False)
        writer = BulkMetricWriter(client)
        for batch in batches:
            writer.write(by_rows, batch)
        assert spy.take() == {"_insert_points": 3}
    copied, inserted = _rows(engine, by_copy), _rows(engine, by_rows)
    assert copied["metrics"] == inserted["metrics"]
    assert len(copied["metrics"]) == sum(len(b) for b in batches)
    assert copied["latest"] == inserted["latest"] and copied["series"] == inserted["series"]
    _same_summary(copied["summary"], inserted["summary"])
    _same_summary(copied["summary"], _rebuilt(engine, by_copy))
    # And stock MLflow reads the copied points back as its own.
    with tenant_scope(TENANT):
        for key in "abd":
            ours, theirs = (
                sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(r, key))
                for r in (by_copy, by_rows)
            )
            assert ours == theirs and ours
        assert sorted(m.value for m in client.get_metric_history(by_copy, "a"))[0] == 1 / 7 + 1
        assert client.get_run(by_copy).data.metrics == client.get_run(by_rows).data.metrics


@pytest.mark.postgres
def test_re_sent_batches_are_stored_and_counted_once(pg_services, monkeypatch) -> None:
    client = pg_services.backend.client
    engine = sql_engine(client)
    run_id = pg_services.runs.create_run(TENANT, "resend").info.run_id
    points = _points(4_000, keys="a")
    spy = Spy(monkeypatch)
    with tenant_scope(TENANT):
        writer = BulkMetricWriter(client)
        writer.write(run_id, points[:3_000])
        assert spy.take() == {"_copy_points": 1, "_copy_upsert": 1}
        writer.write(run_id, points[:3_000])  # a retry whose first answer was lost
        writer.write(run_id, points[2_000:])  # overlaps the first batch
        # COPY failed on the stored rows and each batch went in the slow way, skipping them.
        assert spy.take() == {"_copy_points": 2, "_insert_points": 2}
        writer.write(run_id, [points[0], points[0]])  # a point twice in one batch
        result = downsample(client, run_id, "a", 50)
    stored = _rows(engine, run_id)
    assert len(stored["metrics"]) == 4_000
    assert result.total == 4_000 == sum(b.count for b in result.buckets)
    assert math.isclose(
        sum(b.mean * b.count for b in result.buckets), sum(p[1] for p in points), rel_tol=1e-9
    )
    _same_summary(stored["summary"], _rebuilt(engine, run_id))


@pytest.mark.postgres
def test_a_failed_copy_leaves_nothing_and_the_run_writable(pg_services) -> None:
    client = pg_services.backend.client
    engine = sql_engine(client)
    run_id = pg_services.runs.create_run(TENANT, "fk").info.run_id
    with tenant_scope(TENANT):
        writer = BulkMetricWriter(client)
        # A run that does not exist fails MLflow's foreign key inside the COPY.
        with pytest.raises(Exception):  # noqa: B017 - the translated error's type is not the point
            writer.write("0" * 32, _points(100))
        writer.write(run_id, _points(100))
        # Stock MLflow's own write of a later point is noticed as before.
        client.log_batch(run_id, metrics=[Metric("a", 5.0, 9_999, 1_000)])
        assert downsample(client, run_id, "a", 10).total == 101
    with engine.connect() as conn:
        orphans = conn.execute(
            text("SELECT COUNT(*) FROM metrics WHERE run_uuid = :r"), {"r": "0" * 32}
        )
        assert orphans.scalar() == 0
