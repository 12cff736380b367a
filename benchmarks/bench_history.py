"""A 1M-point metric history for a chart: matih-ml's downsampling (min/max/mean per
bucket, from the write-time summary) beside plain MLflow 3.17's full
``get_metric_history`` and its sampled ``get_metric_history_bulk_interval`` (what
MLflow's UI uses), on one SQLite store.

Run with ``make bench``; the figures in docs/performance.md come from it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

POINTS = 1_000_000
BUCKETS = 1_000
REPEATS = 7


def main() -> None:
    from matih_ml.config import Settings
    from matih_ml.mlflow_adapter import rollup, stores
    from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
    from matih_ml.mlflow_adapter.downsample import downsample
    from matih_ml.services import build_services
    from matih_ml.tenancy import tenant_scope

    root = Path(tempfile.mkdtemp(prefix="matih-bench-"))
    try:
        services = build_services(Settings(MATIH_DATA_DIR=str(root), MLFLOW_TRACKING_URI=None))
        run_id = services.runs.create_run("bench", "history").info.run_id
        client = services.backend.client
        points = [("loss", 1.0 / (i + 1), 1_000 + i, i) for i in range(POINTS)]
        with tenant_scope("bench"):
            BulkMetricWriter(client).write(run_id, points)
            ours = []
            for _ in range(REPEATS):
                t = time.perf_counter()
                result = downsample(client, run_id, "loss", BUCKETS)
                ours.append(time.perf_counter() - t)
            assert result.total == POINTS and 0.9 * BUCKETS <= len(result.buckets) <= BUCKETS
            # A series that stock MLflow wrote has no summary yet: its first chart builds it.
            engine = stores.sql_engine(client)
            t = time.perf_counter()
            rollup.rebuild(engine, run_id, "loss")
            rebuild_s = time.perf_counter() - t
            store = stores.tracking_store(client)
            sampled = []
            for _ in range(3):
                t = time.perf_counter()
                store.get_metric_history_bulk_interval([run_id], "loss", BUCKETS, None, None)
                sampled.append(time.perf_counter() - t)
            t = time.perf_counter()
            full = client.get_metric_history(run_id, "loss")
            full_s = time.perf_counter() - t
            assert len(full) == POINTS
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mine = statistics.median(ours) * 1000
    rows = [
        (
            "1M points -> 1,000 buckets, ms (median)",
            mine,
            statistics.median(sampled) * 1000,
            "get_metric_history_bulk_interval (1,000 samples)",
        ),
        (
            "1M points -> 1,000 buckets, ms (median)",
            mine,
            full_s * 1000,
            "get_metric_history (all points)",
        ),
    ]
    print(f"{'measure':42} {'matih-ml':>10} {'MLflow':>10} {'ratio':>8}  MLflow path")
    for name, a, b, how in rows:
        print(f"{name:42} {a:10,.1f} {b:10,.1f} {b / a:7.1f}x  {how}")
    print(f"one-off summary rebuild for 1M points stock MLflow wrote: {rebuild_s * 1000:,.0f} ms")


if __name__ == "__main__":
    main()
