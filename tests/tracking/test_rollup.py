"""The write-time chart summary stays equal to its points: under re-sent batches, stock
MLflow writers before and after, and many threads writing one run at once, on SQLite
and PostgreSQL."""

from __future__ import annotations

import math
import random
import threading

import pytest
from mlflow.entities import Metric
from sqlalchemy import text

from conftest import embedded_settings
from matih_ml.mlflow_adapter import downsample as ds
from matih_ml.mlflow_adapter import rollup
from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
from matih_ml.mlflow_adapter.downsample import downsample
from matih_ml.mlflow_adapter.stores import sql_engine
from matih_ml.tenancy import tenant_scope


def _summary(engine, run_id: str) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT key, level, block, points, value_sum, min_value, max_value, min_step, "
                f"max_step FROM {rollup.ROLLUPS} WHERE run_uuid = :r "
                "ORDER BY key, level, block"
            ),
            {"r": run_id},
        ).all()
    return [tuple(r) for r in rows]


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[:4] == y[:4] and x[5:] == y[5:]
        assert math.isclose(x[4], y[4], rel_tol=1e-9, abs_tol=1e-9)


def _assert_matches_points(engine, run_id: str) -> None:
    """The incremental summary is what a rebuild from the points gives."""
    incremental = _summary(engine, run_id)
    with engine.connect() as conn:
        keys = [
            r[0]
            for r in conn.execute(
                text("SELECT DISTINCT key FROM metrics WHERE run_uuid = :r"), {"r": run_id}
            )
        ]
    for key in keys:
        rollup.rebuild(engine, run_id, key)
    _assert_same(incremental, _summary(engine, run_id))
    assert incremental, "the writes left no summary"


def _run(tracker, tenant: str) -> str:
    from matih_ml.tracking import RunConfig

    with tracker.start_run("rollup", RunConfig(tenant_id=tenant)) as run:
        pass
    return run.run_id


def _engine(tracker):
    return sql_engine(tracker.backend.client)


def test_re_sent_and_overlapping_batches_are_counted_once(tracker, tenant) -> None:
    run_id = _run(tracker, tenant)
    points = [("loss", float(i % 97), 1_000 + i, i) for i in range(20_000)]
    with tenant_scope(tenant):
        writer = BulkMetricWriter(tracker.backend.client)
        writer.write(run_id, points[:12_000])
        writer.write(run_id, points[:12_000])  # a retry whose first answer was lost
        writer.write(run_id, points[8_000:])  # overlaps the first 4,000 again
        result = downsample(tracker.backend.client, run_id, "loss", 100)
    assert result.total == 20_000 == sum(b.count for b in result.buckets)
    assert math.isclose(
        sum(b.mean * b.count for b in result.buckets), sum(p[1] for p in points), rel_tol=1e-9
    )
    _assert_matches_points(_engine(tracker), run_id)


def test_points_from_stock_mlflow_are_noticed_and_summarised(tracker, tenant, monkeypatch) -> None:
    monkeypatch.setattr(ds, "REBUILD_MIN_POINTS", 1)
    client = tracker.backend.client
    run_id = _run(tracker, tenant)
    with tenant_scope(tenant):
        # Before: the series exists before the summary knows it.
        client.log_batch(run_id, metrics=[Metric("acc", 5.0, 1, s) for s in range(500)])
        BulkMetricWriter(client).write(run_id, [("acc", 1.0, 2, s) for s in range(500, 9_000)])
        before = downsample(client, run_id, "acc", 10)
        assert before.total == 9_000 and before.buckets[0].max == 5.0
        # After: a later point from log_batch moves latest_metrics past the summary.
        client.log_batch(run_id, metrics=[Metric("acc", 99.0, 3, 20_000)])
        after = downsample(client, run_id, "acc", 10)
    assert after.total == 9_001 and after.buckets[-1].max == 99.0
    assert after.last == (20_000, 99.0, 3)
    _assert_matches_points(_engine(tracker), run_id)


def _hammer(writer: BulkMetricWriter, run_id: str, tenant: str, threads: int = 8) -> int:
    """Threads write interleaved batches of three keys, re-sending some; returns points."""
    batches = [
        [
            (k, random.Random(b).random() * 10, 1_000 + b, b * 50 + i)
            for k in "abc"
            for i in range(50)
        ]
        for b in range(threads * 25)
    ]
    errors: list[BaseException] = []

    def work(mine: list[list]) -> None:
        try:
            with tenant_scope(tenant):
                for batch in mine:
                    writer.write(run_id, batch)
                    if random.random() < 0.2:
                        writer.write(run_id, random.choice(mine))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(batches[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    return sum(len(b) for b in batches)


@pytest.mark.parametrize("repeat", range(3))
def test_many_threads_writing_one_run_keep_the_summary_exact(tracker, tenant, repeat) -> None:
    run_id = _run(tracker, tenant)
    total = _hammer(BulkMetricWriter(tracker.backend.client), run_id, tenant)
    with tenant_scope(tenant):
        for key in "abc":
            assert downsample(tracker.backend.client, run_id, key, 7).total == total // 3
    _assert_matches_points(_engine(tracker), run_id)


def test_many_threads_on_postgresql_keep_the_summary_exact(tmp_path, postgres_database) -> None:
    from matih_ml.services import build_services

    settings = embedded_settings(tmp_path).model_copy(
        update={"tracking_uri_env": postgres_database, "auto_migrate_env": True}
    )
    services = build_services(settings)
    try:
        run_id = services.runs.create_run("acme", "rollup").info.run_id
        client = services.backend.client
        total = _hammer(BulkMetricWriter(client), run_id, "acme")
        with tenant_scope("acme"):
            for key in "abc":
                assert downsample(client, run_id, key, 7).total == total // 3
        _assert_matches_points(sql_engine(client), run_id)
    finally:
        services.db.dispose()
