"""Reads for ``bench_pg.py``: ``list_models`` and ``compare_runs`` at 1,000 tenants x
1,000 models, and a 10M-point history to 1,000 buckets on PostgreSQL and SQLite. A mixin
of ``bench_pg.Bench``."""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pg_seed
from bench_mlflow_protocol import Server

TENANT = "bench"


def load() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


def pct(samples: list[float], q: int) -> float:
    """The ``q``th percentile of ``samples`` (seconds), in ms."""
    if q == 50:
        return statistics.median(samples) * 1000
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000


def timed(fn: Callable[[], Any], n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


class Http:
    """GETs with a key on one keep-alive connection. The server closes a connection left
    idle for 5 s (uvicorn's default); the next call then opens a new one, which the
    warm-up calls before each timing absorb."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str, key: str) -> bytes:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
                resp = self.conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            if resp.status != 200:
                raise RuntimeError(f"GET {path[:80]}: HTTP {resp.status}: {body[:300]!r}")
            return body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Reads:
    """The read measurements (``bench_pg.Bench`` holds the servers and the rows)."""

    # Set by bench_pg.Bench.
    args: Any
    root: Path
    dbs: Any
    ours: Server
    ours_url: str
    services: Any

    def row(self, *args: Any) -> None:
        raise NotImplementedError

    def note(self, text: str) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- registry

    def registry(self) -> None:
        from mlflow.entities import Param

        from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
        from matih_ml.mlflow_adapter.model_reads import make_token
        from matih_ml.tenancy import tenant_scope

        a = self.args
        tenants = [f"t{t:04d}" for t in range(a.tenants)]
        roots = {t: self.services.tenants.tenant_artifact_root(t) for t in tenants}
        print(f"seeding {a.tenants:,} x {a.models:,} models (load {load():.2f})", flush=True)
        seconds = pg_seed.seed_models(self.dbs.libpq(self.ours_url), roots, a.models)
        self.note(f"seeded {a.tenants * a.models:,} models in {seconds:.0f} s (not measured)")
        client = self.services.backend.client
        rng = random.Random(21)
        offsets = list(range(0, a.models - 99, 100))

        def pick() -> tuple[str, str | None]:
            offset = rng.choice(offsets)
            return rng.choice(tenants), make_token(offset) if offset else None

        def ours() -> None:
            tenant, token = pick()
            page = self.services.registry.list_models_page(
                tenant, max_results=100, page_token=token
            )
            assert len(page.items) == 100, len(page.items)

        def plain() -> None:
            tenant, token = pick()
            with tenant_scope(tenant):
                found = client.search_registered_models(max_results=100, page_token=token)
            assert len(found) == 100, len(found)

        viewers = {
            t: self.services.api_keys.create(t, "viewer", "bench").secret
            for t in rng.sample(tenants, min(50, len(tenants)))
        }
        web = Http(self.ours.port)

        def rest() -> None:
            tenant = rng.choice(list(viewers))
            offset = rng.choice(offsets)
            query = "?max_results=100" + (f"&page_token={make_token(offset)}" if offset else "")
            body = web.get(f"/api/v1/models{query}", viewers[tenant])
            assert len(json.loads(body)["items"]) == 100, body[:300]

        # A server's steady state: each tenant seen once (the tenant directory keeps the
        # tenants it has met), each viewer's key used once.
        for tenant in tenants:
            self.services.registry.list_models_page(tenant, max_results=1)
        for _ in range(2 * len(viewers)):
            rest()
        print(f"list_models (load {load():.2f})", flush=True)
        mine, theirs = timed(ours, a.calls), timed(plain, a.plain_calls)
        over_rest = timed(rest, a.calls)
        target = "p99 <= 20 ms"
        self.row("list_models, 100 of 1,000 x 1,000, p50 ms", pct(mine, 50), pct(theirs, 50))
        self.row("list_models, p99 ms", pct(mine, 99), pct(theirs, 99), target, pct(mine, 99) <= 20)
        # Over REST (key check, routing, JSON) for what a client sees; the target's figure
        # is the in-process one, as on SQLite (bench_registry.py).
        self.row("list_models over REST, p50 ms", pct(over_rest, 50), None)
        self.row("list_models over REST, p99 ms", pct(over_rest, 99), None)

        print(f"compare_runs (load {load():.2f})", flush=True)
        tenant = tenants[1]
        writer = BulkMetricWriter(client)
        ids = []
        for i in range(100):
            rid = self.services.runs.create_run(tenant, "compare").info.run_id
            with tenant_scope(tenant):
                client.log_batch(rid, params=[Param(f"p{j}", str(i * j)) for j in range(20)])
                writer.write(rid, [(f"m{j}", float(i + j), 1, 0) for j in range(20)])
            ids.append(rid)
        keys = [f"m{j}" for j in range(20)]

        def compare() -> None:
            rows = self.services.registry.compare_runs(tenant, ids, keys)
            assert len(rows) == 100 and len(rows[0]["parameters"]) == 20

        def get_runs() -> None:
            with tenant_scope(tenant):
                assert len([client.get_run(r) for r in ids]) == 100

        key = self.services.api_keys.create(tenant, "viewer", "bench-compare").secret
        path = f"/api/v1/experiments/compare?run_ids={','.join(ids)}&metrics={','.join(keys)}"

        def compare_rest() -> None:
            body = web.get(path, key)
            assert len(json.loads(body)) == 100, body[:300]

        mine, theirs = timed(compare, a.calls // 4), timed(get_runs, 10, warmup=1)
        over_rest = timed(compare_rest, a.calls // 4)
        web.close()
        self.row(
            "compare_runs, 100 runs x 20 params x 20 metrics, p50 ms",
            pct(mine, 50),
            pct(theirs, 50),
        )
        p99 = pct(mine, 99)
        self.row("compare_runs, p99 ms", p99, pct(theirs, 99), "p99 <= 30 ms", p99 <= 30)
        self.row("compare_runs over REST, p50 ms", pct(over_rest, 50), None)
        self.row("compare_runs over REST, p99 ms", pct(over_rest, 99), None)

    # ----------------------------------------------------------------- history

    def history(self, store: str) -> None:
        from matih_ml.config import Settings
        from matih_ml.mlflow_adapter import rollup, stores
        from matih_ml.mlflow_adapter.downsample import downsample
        from matih_ml.services import build_services
        from matih_ml.tenancy import tenant_scope

        n = self.args.history_points
        if store == "PostgreSQL":
            services = self.services
        else:
            data = self.root / "sqlite"
            services = build_services(
                Settings(
                    MATIH_DATA_DIR=str(data),
                    MLFLOW_TRACKING_URI=None,
                    MLFLOW_REGISTRY_URI=None,
                    MLFLOW_ARTIFACT_ROOT=None,
                    MATIH_DATABASE_URL=None,
                )
            )
            services.tenants.create_tenant(TENANT)
        client = services.backend.client
        engine = stores.sql_engine(client)
        assert engine is not None
        run_id = services.runs.create_run(TENANT, "history").info.run_id
        print(f"seeding {n:,} points on {store} (load {load():.2f})", flush=True)
        if store == "PostgreSQL":
            seconds = pg_seed.seed_points_pg(self.dbs.libpq(self.ours_url), run_id, "loss", n)
        else:
            engine.dispose()
            seconds = pg_seed.seed_points_sqlite(str(data / "mlflow.db"), run_id, "loss", n)
        self.note(f"seeded {n:,} points on {store} in {seconds:.0f} s (not measured)")
        # The points were written behind the summary's back, as a stock writer would: the
        # first chart rebuilds the series' summary (timed on its own, once).
        t = time.perf_counter()
        rollup.rebuild(engine, run_id, "loss")
        rebuild = time.perf_counter() - t
        with tenant_scope(TENANT):

            def chart() -> None:
                result = downsample(client, run_id, "loss", 1_000)
                assert result.total == n and 0.9 * 1_000 <= len(result.buckets) <= 1_000
                assert result.first == (0, 1.0, 1000) and result.last[0] == n - 1

            samples = timed(chart, 9, warmup=1)
            t = time.perf_counter()
            sampled = stores.tracking_store(client).get_metric_history_bulk_interval(
                [run_id], "loss", 1_000, None, None
            )
            plain = time.perf_counter() - t
            assert len(sampled) >= 1_000
        mine = pct(samples, 50)
        self.row(
            f"{n / 1e6:g}M points -> 1,000 buckets on {store}, median ms",
            mine,
            plain * 1000,
            "<= 50 ms",
            mine <= 50,
        )
        self.row(f"  the same, slowest of 9, ms ({store})", max(samples) * 1000, None)
        self.row(f"  one-off summary rebuild of {n / 1e6:g}M points ({store}), s", rebuild, None)
        if store != "PostgreSQL":
            services.db.dispose()
            engine.dispose()
