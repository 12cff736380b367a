"""The benchmarks on PostgreSQL (the production profile), beside plain MLflow 3.17.

``make bench-pg`` (or ``.venv/bin/python benchmarks/bench_pg.py``; ``--quick`` for a
small smoke run, ``--help`` for the sizes). It uses the PostgreSQL at
``MATIH_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``),
creates its own databases under unique names and drops them at the end, also on failure.

Side by side, in one run:

- ``matih-ml serve`` on one database (migrated with ``matih-ml db upgrade``; the
  per-tenant limits off, since they would measure the limit rather than the store) and a
  plain ``mlflow server`` on another;
- ingestion: our REST (``POST /runs/{id}/metrics:batch``, 20,000 points a request), our
  SDK (in process on PostgreSQL, as an operator runs it, and against the server with a
  URL and a key), and the stock ``MlflowClient.log_batch`` through our MLflow door,
  against the same ``log_batch`` through the plain server (1,000 points a call). The
  clients of the servers run in processes of their own; two rounds, the order reversed in
  the second. Every point sent is counted back in the database;
- the ways of writing rows from psycopg 3 (``pg_write_paths``): what the bulk writer uses
  and the alternatives, and what bounds the points (COPY without MLflow's foreign key,
  without its indexes);
- ``list_models``, a 100-model page of a random tenant at a random offset, among 1,000
  tenants x 1,000 models (written straight into MLflow's tables, ``pg_seed``), in process
  and over REST, against MLflow's ``search_registered_models`` on the same tables;
- ``compare_runs`` over 100 runs of 20 params and 20 metrics, against 100 ``get_run``;
- a 10M-point history reduced to 1,000 buckets, on PostgreSQL and on SQLite (points
  written straight into MLflow's ``metrics`` table, the chart summary built by the
  service's own rebuild, timed), against MLflow's ``get_metric_history_bulk_interval``.

It prints a table with each target marked met or not, and the 1-minute load average
beside each figure (other work may share the machine). docs/performance.md records the
figures. The measurements live in ``pg_ingest`` and ``pg_reads``, the databases and seeds
in ``pg_seed``; this file starts the servers and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import pg_seed  # after the telemetry switch: the imports below import MLflow
import psycopg
from bench_mlflow_protocol import Server, _env, settle
from common import free_port
from pg_ingest import TENANT, Ingestion
from pg_reads import Reads, load

REST_BATCH = 20_000
BATCH = 1_000


class Bench(Ingestion, Reads):
    """One run: the databases, the two servers, the figures."""

    def __init__(self, args: argparse.Namespace, root: Path, dbs: pg_seed.Databases) -> None:
        self.args, self.root, self.dbs = args, root, dbs
        self.rows: list[tuple[str, float, float | None, str, str, float]] = []
        self.notes: list[str] = []
        self.servers: list[Server] = []

    def row(
        self, name: str, ours: float, plain: float | None, target: str = "", met: bool | None = None
    ) -> None:
        verdict = "" if met is None else ("met" if met else "NOT MET")
        self.rows.append((name, ours, plain, target, verdict, load()))
        print(f"  {name}: {ours:,.1f}" + (f" / plain {plain:,.1f}" if plain else ""), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  {text}", flush=True)

    # ------------------------------------------------------------------ set-up

    def start(self) -> None:
        self.ours_url = self.dbs.create("ours")
        self.plain_url = self.dbs.create("plain")
        data = self.root / "matih"
        self.env = _env(
            MATIH_DATA_DIR=str(data),
            MLFLOW_TRACKING_URI=self.ours_url,
            MLFLOW_ARTIFACT_ROOT=str(data / "artifacts"),
            MATIH_LIMIT_POINTS_PER_S="0",
            MATIH_LIMIT_REQUESTS_PER_S="0",
        )
        with ThreadPoolExecutor(2) as pool:  # the plain server starts while ours is set up
            plain = pool.submit(self._start_plain)
            ours = pool.submit(self._start_ours)
            for future in (plain, ours):
                with contextlib.suppress(Exception):  # raised below, once both are in
                    self.servers.append(future.result())
            self.plain, self.ours = plain.result(), ours.result()

        from matih_ml.config import Settings
        from matih_ml.services import build_services

        self.settings = Settings(
            MATIH_DATA_DIR=str(data),
            MLFLOW_TRACKING_URI=self.ours_url,
            MLFLOW_REGISTRY_URI=None,
            MLFLOW_ARTIFACT_ROOT=str(data / "artifacts"),
            MATIH_DATABASE_URL=None,
        )
        self.services = build_services(self.settings)
        t = time.perf_counter()
        settle(self.servers)
        print(f"  servers settled in {time.perf_counter() - t:.0f} s", flush=True)

    def _start_ours(self) -> Server:
        cli = str(Path(sys.executable).parent / "matih-ml")
        t = time.perf_counter()
        for argv in (["db", "upgrade"], ["tenants", "create", TENANT]):
            _run([cli, *argv], self.env)
        keys = _run([cli, "keys", "create", "-t", TENANT, "--role", "editor", "--json"], self.env)
        self.key = json.loads(keys)["key"]
        print(f"  matih-ml: migrated, a tenant and a key in {time.perf_counter() - t:.0f} s")
        port = free_port()
        argv = [cli, "serve", "--host", "127.0.0.1", "--port", str(port)]
        server = Server("matih-ml serve", argv, self.env, port, "/readyz", self.root / "o.log")
        print(f"  matih-ml serve ready at {time.perf_counter() - t:.0f} s", flush=True)
        return server

    def _start_plain(self) -> Server:
        port = free_port()
        argv = [str(Path(sys.executable).parent / "mlflow"), "server"]
        argv += ["--backend-store-uri", self.plain_url]
        argv += ["--artifacts-destination", str(self.root / "plain-artifacts")]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        t = time.perf_counter()
        server = Server("mlflow server", argv, _env(), port, "/health", self.root / "p.log")
        print(f"  mlflow server ready in {time.perf_counter() - t:.0f} s", flush=True)
        return server

    def stop(self) -> None:
        if hasattr(self, "services"):
            self.services.db.dispose()
            from matih_ml.mlflow_adapter.stores import sql_engine

            engine = sql_engine(self.services.backend.client)
            if engine is not None:
                engine.dispose()
        for server in reversed(self.servers):
            server.stop()


def _run(argv: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:3])} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def report(bench: Bench, started: float, load_before: float) -> None:
    print()
    print(
        f"bench_pg: PostgreSQL {bench.server_version}, {os.cpu_count()} cores shared by the "
        f"clients, the servers and the database; 1-min load {load_before:.2f} at the start, "
        f"{load():.2f} at the end; {time.time() - started:.0f} s"
    )
    print(f"{'measure':66} {'matih-ml':>12} {'plain':>12} {'ratio':>7} {'load':>5}  target")
    for name, ours, plain, target, verdict, at in bench.rows:
        ratio = ""
        if plain:
            lower_is_better = name.endswith((" ms", ", s"))
            faster = plain / ours if lower_is_better else ours / plain
            ratio = f"{faster:6.1f}x"
        theirs = f"{plain:12,.1f}" if plain else f"{'':12}"
        check = f"{target}: {verdict}" if target else ""
        print(f"{name:66} {ours:12,.1f} {theirs} {ratio:>7} {at:5.2f}  {check}")
    for text in bench.notes:
        print(f"note: {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--rest-batches", type=int, default=40, help="20,000-point requests")
    parser.add_argument("--door-batches", type=int, default=60, help="1,000-point log_batch")
    parser.add_argument("--plain-batches", type=int, default=20, help="the same, plain")
    parser.add_argument("--sdk-points", type=int, default=1_000_000)
    parser.add_argument("--raw-rows", type=int, default=100_000, help="rows per write path")
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--models", type=int, default=1_000, help="models per tenant")
    parser.add_argument("--calls", type=int, default=200, help="timed list_models calls")
    parser.add_argument("--plain-calls", type=int, default=50)
    parser.add_argument("--history-points", type=int, default=10_000_000)
    parser.add_argument(
        "--only", nargs="*", default=["ingestion", "write-paths", "registry", "history"]
    )
    args = parser.parse_args()
    if args.quick:
        args.rest_batches, args.door_batches, args.plain_batches = 4, 4, 4
        args.sdk_points, args.raw_rows, args.tenants, args.models = 100_000, 20_000, 20, 200
        args.calls, args.plain_calls, args.history_points = 40, 10, 300_000
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started, load_before = time.time(), load()
    root = Path(tempfile.mkdtemp(prefix="matih-bench-pg-"))
    dbs = pg_seed.Databases()
    bench = Bench(args, root, dbs)
    try:
        with psycopg.connect(dbs.admin_url, connect_timeout=5) as conn:
            bench.server_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        bench.start()
        print(f"servers up in {time.time() - started:.0f} s", flush=True)
        # Each part starts after a checkpoint, so that none pays for the last one's WAL.
        if "ingestion" in args.only:
            pg_seed.checkpoint()
            bench.ingestion()
        if "write-paths" in args.only:
            pg_seed.checkpoint()
            bench.write_paths()
        if "registry" in args.only:
            bench.registry()
        if "history" in args.only:
            bench.history("PostgreSQL")
            bench.history("SQLite")
    finally:
        try:
            bench.stop()
        finally:
            dbs.drop_all()
            shutil.rmtree(root, ignore_errors=True)
    report(bench, started, load_before)


if __name__ == "__main__":
    main()
