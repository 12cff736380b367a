"""Registry reads at scale, beside plain MLflow 3.17 on the same SQLite store:

- ``list_models``: a 100-model page for one tenant among 100 tenants x 1,000 models,
  against MLflow's ``search_registered_models`` in that tenant's workspace;
- ``compare_runs`` over 100 runs with 20 params and 20 metrics each, against 100
  ``get_run`` calls.

The 100,000 models (each with one version) are written straight into MLflow's tables,
so that setting up takes seconds rather than the hour the API would take.

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

TENANTS = 100
MODELS = 1_000
REPEATS = 200


def _pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1000


def populate(services) -> None:
    from sqlalchemy import text

    from matih_ml.mlflow_adapter.stores import registry_store

    engine = registry_store(services.backend.client).engine
    now = int(time.time() * 1000)
    for t in range(TENANTS):
        services.tenants.create_tenant(f"t{t:03d}")
    with engine.begin() as conn:
        for t in range(TENANTS):
            ws = f"t{t:03d}"
            names = [f"model-{m:04d}" for m in range(MODELS)]
            conn.execute(
                text(
                    "INSERT INTO registered_models (workspace, name, creation_time, "
                    "last_updated_time, description) VALUES (:w, :n, :t, :t, '')"
                ),
                [{"w": ws, "n": n, "t": now} for n in names],
            )
            conn.execute(
                text(
                    "INSERT INTO model_versions (workspace, name, version, creation_time, "
                    "last_updated_time, description, current_stage, source, status) "
                    "VALUES (:w, :n, 1, :t, :t, '', 'None', 's3://b/m', 'READY')"
                ),
                [{"w": ws, "n": n, "t": now} for n in names],
            )
            conn.execute(
                text(
                    "INSERT INTO model_version_tags (workspace, name, version, key, value) "
                    "VALUES (:w, :n, 1, :k, :v)"
                ),
                [
                    {"w": ws, "n": n, "k": k, "v": v}
                    for n in names
                    for k, v in (("matih.stage", "development"), ("matih.framework", "sklearn"))
                ],
            )


def bench_list(services) -> tuple[list[float], list[float]]:
    from matih_ml.tenancy import tenant_scope

    client = services.backend.client
    # One loop each (interleaving them would charge one side with the other's garbage).
    ours = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        page = services.registry.list_models_page("t042", max_results=100)
        ours.append(time.perf_counter() - t)
        assert len(page.items) == 100
    plain = []
    with tenant_scope("t042"):
        for _ in range(REPEATS):
            t = time.perf_counter()
            found = client.search_registered_models(max_results=100)
            plain.append(time.perf_counter() - t)
            assert len(found) == 100
    return ours, plain


def bench_compare(services) -> tuple[list[float], list[float]]:
    from mlflow.entities import Param

    from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
    from matih_ml.tenancy import tenant_scope

    client = services.backend.client
    writer = BulkMetricWriter(client)
    ids = []
    for i in range(100):
        run = services.runs.create_run("t001", "compare")
        rid = run.info.run_id
        with tenant_scope("t001"):
            client.log_batch(rid, params=[Param(f"p{j}", str(i * j)) for j in range(20)])
            writer.write(rid, [(f"m{j}", float(i + j), 1, 0) for j in range(20)])
        ids.append(rid)
    keys = [f"m{j}" for j in range(20)]
    ours, plain = [], []
    for _ in range(REPEATS // 4):
        t = time.perf_counter()
        rows = services.registry.compare_runs("t001", ids, keys)
        ours.append(time.perf_counter() - t)
        assert len(rows) == 100 and len(rows[0]["parameters"]) == 20
        with tenant_scope("t001"):
            t = time.perf_counter()
            got = [client.get_run(r) for r in ids]
            plain.append(time.perf_counter() - t)
            assert len(got) == 100
    return ours, plain


def main() -> None:
    from matih_ml.config import Settings
    from matih_ml.services import build_services

    root = Path(tempfile.mkdtemp(prefix="matih-bench-"))
    try:
        services = build_services(Settings(MATIH_DATA_DIR=str(root), MLFLOW_TRACKING_URI=None))
        t = time.perf_counter()
        populate(services)
        print(f"populated {TENANTS} tenants x {MODELS} models in {time.perf_counter() - t:.0f} s")
        list_ours, list_plain = bench_list(services)
        cmp_ours, cmp_plain = bench_compare(services)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        (
            "list_models 100 of 100x1,000, p50 ms",
            _pct(list_ours, 50),
            _pct(list_plain, 50),
            "search_registered_models",
        ),
        (
            "list_models 100 of 100x1,000, p99 ms",
            _pct(list_ours, 99),
            _pct(list_plain, 99),
            "search_registered_models",
        ),
        ("compare_runs 100 runs, p50 ms", _pct(cmp_ours, 50), _pct(cmp_plain, 50), "100 x get_run"),
        ("compare_runs 100 runs, p99 ms", _pct(cmp_ours, 99), _pct(cmp_plain, 99), "100 x get_run"),
    ]
    print(f"{'measure':40} {'matih-ml':>10} {'MLflow':>10} {'ratio':>8}  MLflow path")
    for name, a, b, how in rows:
        print(f"{name:40} {a:10.1f} {b:10.1f} {b / a:7.1f}x  {how}")


if __name__ == "__main__":
    main()
