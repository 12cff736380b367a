"""Ingestion for ``bench_pg.py``: our REST, our SDK (in process, and against the server),
the stock client through our MLflow door, and plain MLflow's ``log_batch``; and the ways of
writing rows from psycopg 3 (``pg_write_paths``). A mixin of ``bench_pg.Bench``."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pg_write_paths
import psycopg
from bench_mlflow_protocol import Server
from pg_reads import load

TENANT = "bench"
REST_BATCH = 20_000
BATCH = 1_000

# The stock MLflow client, or our SDK against a server: configured by its environment only.
CLIENT = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
args = json.loads(sys.argv[1])
size, n = args["batch"], args["batches"]
now = int(time.time() * 1000)
if args["kind"] == "log_batch":
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    c = MlflowClient()
    run = c.create_run(c.create_experiment(args["experiment"])).info.run_id
    batches = [
        [Metric(f"m{i % 20}", 0.5 + i, now, (b * size + i) // 20) for i in range(size)]
        for b in range(n + 1)
    ]
    c.log_batch(run, metrics=batches[0])  # warm-up: the connection, the run's first write
    t = time.perf_counter()
    for batch in batches[1:]:
        c.log_batch(run, metrics=batch)
    out = {"run_id": run, "s": time.perf_counter() - t, "points": n * size, "sent": (n + 1) * size}
else:  # matih-ml's SDK with a URL and a key (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN)
    from matih_ml.tracking import ExperimentTracker, RunConfig
    tracker = ExperimentTracker(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    keys = [f"m{i}" for i in range(20)]
    points = n * size
    with tracker.start_run(args["experiment"], RunConfig(tenant_id=args["tenant"])) as run:
        t = time.perf_counter()
        for i in range(points):
            run.log_metric(keys[i % 20], 0.5, i // 20)
        run.flush()
        out = {"run_id": run.run_id, "s": time.perf_counter() - t, "points": points, "sent": points}
print("RESULT " + json.dumps(out))
"""


class Ingestion:
    """The ingestion measurements (``bench_pg.Bench`` holds the servers and the rows)."""

    # Set by bench_pg.Bench.
    args: Any
    root: Path
    dbs: Any
    ours: Server
    plain: Server
    ours_url: str
    plain_url: str
    key: str
    settings: Any
    services: Any

    def row(self, *args: Any) -> None:
        raise NotImplementedError

    def count(self, url: str, run_id: str) -> int:
        with psycopg.connect(self.dbs.libpq(url)) as conn:
            row = conn.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = %s", (run_id,))
            return int(row.fetchone()[0])  # type: ignore[index]

    # --------------------------------------------------------------- ingestion

    def client(self, server: Server, token: str | None, args: dict[str, Any]) -> dict[str, Any]:
        folder = Path(tempfile.mkdtemp(prefix="client-", dir=self.root))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
        if token:
            env["MLFLOW_TRACKING_TOKEN"] = token
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, json.dumps(args)],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=900,
        )
        result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not result:
            raise RuntimeError(f"client {args['kind']} on {server.name}:\n{proc.stderr[-3000:]}")
        out = json.loads(result[-1][7:])
        url = self.ours_url if server is self.ours else self.plain_url
        stored = self.count(url, out["run_id"])
        if stored != out["sent"]:
            raise RuntimeError(f"{args['kind']} on {server.name}: {stored} of {out['sent']} stored")
        return out

    def rest(self, batches: int, name: str) -> tuple[int, float, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ours.port, timeout=300)
        h = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        conn.request("POST", "/api/v1/runs", json.dumps({"experiment_name": name}), h)
        resp = conn.getresponse()
        run_id = json.loads(resp.read())["run_id"]
        n = REST_BATCH
        bodies = [
            json.dumps(
                {
                    "keys": [f"m{i % 20}" for i in range(n)],
                    "values": [0.5 + i for i in range(n)],
                    "steps": [(b * n + i) // 20 for i in range(n)],
                }
            ).encode()
            for b in range(batches)
        ]
        cpu = self.ours.cpu_s()
        t = time.perf_counter()
        for body in bodies:
            conn.request("POST", f"/api/v1/runs/{run_id}/metrics:batch", body, h)
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"metrics:batch: HTTP {resp.status}: {answer[:300]!r}")
        seconds = time.perf_counter() - t
        cpu = self.ours.cpu_s() - cpu
        conn.close()
        if self.count(self.ours_url, run_id) != batches * n:
            raise RuntimeError("metrics:batch: not every point is stored")
        return batches * n, seconds, cpu

    def ingestion(self) -> None:
        a = self.args
        print(f"ingestion (load {load():.2f})", flush=True)
        totals: dict[str, list[float]] = {}
        rest_cpu = 0.0

        def add(side: str, points: float, seconds: float) -> None:
            acc = totals.setdefault(side, [0.0, 0.0])
            acc[0] += points
            acc[1] += seconds

        sides = ["plain", "rest", "door", "sdk-remote"]
        for rnd, order in enumerate((sides, sides[::-1])):
            for side in order:
                exp = f"bench-{side}-{rnd}"
                if side == "rest":
                    points, seconds, cpu = self.rest(a.rest_batches // 2, exp)
                    rest_cpu += cpu
                    add(side, points, seconds)
                    continue
                server = self.plain if side == "plain" else self.ours
                token = None if side == "plain" else self.key
                kind = "sdk" if side == "sdk-remote" else "log_batch"
                batches = {"plain": a.plain_batches, "door": a.door_batches}.get(
                    side, a.door_batches
                )
                args = {"kind": kind, "experiment": exp, "tenant": TENANT, "batch": BATCH}
                r = self.client(server, token, {**args, "batches": batches // 2})
                add(side, r["points"], r["s"])
        rate = {side: p / s for side, (p, s) in totals.items()}
        sdk = self.sdk_in_process(a.sdk_points)
        plain = rate["plain"]
        self.row(
            "REST metrics:batch, points/s (20,000 a request)",
            rate["rest"],
            plain,
            ">= 200,000/s",
            rate["rest"] >= 200_000,
        )
        ratio = rate["rest"] / plain
        self.row("  the same against plain log_batch, x", ratio, None, ">= 20x", ratio >= 20)
        self.row(
            "  server CPU ms per 1,000 points (REST)",
            rest_cpu / totals["rest"][0] * 1e6,
            None,
        )
        self.row("SDK in process on PostgreSQL, points/s (log_metric + flush)", sdk, plain)
        self.row("SDK against the server (URL + key), points/s", rate["sdk-remote"], plain)
        self.row("stock MlflowClient.log_batch through our door, points/s", rate["door"], plain)

    def sdk_in_process(self, points: int) -> float:
        from matih_ml.tracking import ExperimentTracker, RunConfig

        tracker = ExperimentTracker(settings=self.settings)
        keys = [f"m{i}" for i in range(20)]
        with tracker.start_run("bench-sdk", RunConfig(tenant_id=TENANT)) as run:
            t = time.perf_counter()
            for i in range(points):
                run.log_metric(keys[i % 20], 0.5, i // 20)
            run.flush()
            seconds = time.perf_counter() - t
        if self.count(self.ours_url, run.run_id) != points:
            raise RuntimeError("SDK: not every point is stored")
        return points / seconds

    def write_paths(self) -> None:
        print(f"write paths (load {load():.2f})", flush=True)

        def new_run() -> str:
            return self.services.runs.create_run(TENANT, "write-paths").info.run_id

        found = pg_write_paths.measure(self.dbs.libpq(self.ours_url), new_run, self.args.raw_rows)
        for name, rate in found["points"].items():
            self.row(f"points into metrics: {name}, rows/s", rate, None)
        for name, ms in found["blocks"].items():
            self.row(f"summary blocks of a 200k-point batch: {name}, ms", ms, None)
