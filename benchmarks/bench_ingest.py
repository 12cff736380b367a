"""Metric ingestion, matih-ml beside plain MLflow 3.17, in one run on one machine.

Measures, on the embedded SQLite store:
- points/s through the SDK (buffered ``log_metric`` + ``flush``) against MLflow's
  ``log_metric`` and ``log_batch``;
- the cost of one ``log_metric`` call in a training loop, against MLflow's
  ``log_metric(..., synchronous=False)``;
- points/s over REST (``POST /runs/{id}/metrics:batch`` on ``matih-ml serve``) against
  ``log_batch`` through ``mlflow server``.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_ingest.py``). Prints a
table with the ratios; the figures in docs/performance.md come from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

SDK_POINTS = 1_000_000
LOG_BATCH_POINTS = 50_000
LOG_METRIC_POINTS = 1_000
ASYNC_CALLS = 5_000
REST_POINTS = 400_000
REST_BATCH = 20_000
MLFLOW_REST_POINTS = 20_000


def _wait(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"not ready: {url}\n{log.read_text()}")


def plain_mlflow_in_process(root: Path) -> dict[str, float]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = f"sqlite:///{root / 'plain.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=str(root / "plain-art"))
    out = {}

    run = client.create_run(exp).info.run_id
    t = time.perf_counter()
    for i in range(LOG_METRIC_POINTS):
        client.log_metric(run, "loss", 1.0 / (i + 1), step=i)
    out["log_metric points/s"] = LOG_METRIC_POINTS / (time.perf_counter() - t)

    run = client.create_run(exp).info.run_id
    now = int(time.time() * 1000)
    points = [Metric(f"m{i % 20}", float(i), now, i // 20) for i in range(LOG_BATCH_POINTS)]
    t = time.perf_counter()
    for i in range(0, len(points), 1000):
        client.log_batch(run, metrics=points[i : i + 1000], synchronous=True)
    out["log_batch points/s"] = LOG_BATCH_POINTS / (time.perf_counter() - t)

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=exp):
        t = time.perf_counter()
        for i in range(ASYNC_CALLS):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i, synchronous=False)
        out["async log_metric µs/call"] = (time.perf_counter() - t) / ASYNC_CALLS * 1e6
    return out


def ours_in_process(root: Path) -> dict[str, float]:
    from matih_ml.config import Settings
    from matih_ml.tracking import ExperimentTracker, RunConfig

    settings = Settings(MATIH_DATA_DIR=str(root / "ours"), MLFLOW_TRACKING_URI=None)
    tracker = ExperimentTracker(settings=settings)
    out = {}
    with tracker.start_run("bench", RunConfig(tenant_id="bench")) as run:
        keys = [f"m{i}" for i in range(20)]
        t = time.perf_counter()
        for i in range(SDK_POINTS):
            run.log_metric(keys[i % 20], 0.5, i // 20)
        loop = time.perf_counter() - t
        run.flush()
        total = time.perf_counter() - t
    out["log_metric µs/call (buffered)"] = loop / SDK_POINTS * 1e6
    out["SDK points/s (to disk)"] = SDK_POINTS / total
    return out


def ours_over_rest(root: Path) -> float:
    from matih_ml.config import Settings
    from matih_ml.services import build_services

    data = root / "rest"
    services = build_services(Settings(MATIH_DATA_DIR=str(data), MLFLOW_TRACKING_URI=None))
    services.tenants.create_tenant("bench")
    key = services.api_keys.create("bench", "editor", "bench").secret
    services.db.dispose()
    port = free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "matih_ml.cli", "serve", "--port", str(port)],
        # The engine's rate, not one tenant's share of it: no per-tenant points limit.
        env={**env, "MATIH_DATA_DIR": str(data), "MATIH_LIMIT_POINTS_PER_S": "0"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/readyz", proc, log)
        h = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=h, timeout=120) as c:
            run_id = c.post("/api/v1/runs", json={"experiment_name": "bench"}).json()["run_id"]
            n = REST_BATCH
            bodies = [
                json.dumps(
                    {
                        "keys": [f"m{i % 20}" for i in range(n)],
                        "values": [0.5] * n,
                        "steps": [(b * n + i) // 20 for i in range(n)],
                    }
                ).encode()
                for b in range(REST_POINTS // n)
            ]
            hdr = {"content-type": "application/json"}
            t = time.perf_counter()
            for body in bodies:
                r = c.post(f"/api/v1/runs/{run_id}/metrics:batch", content=body, headers=hdr)
                r.raise_for_status()
            return REST_POINTS / (time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(30)


def plain_mlflow_over_rest(root: Path) -> float:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    port = free_port()
    log = root / "mlflow-server.log"
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen(
        [
            exe,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'srv.db'}",
            "--default-artifact-root",
            str(root / "srv-art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/health", proc, log)
        client = MlflowClient(tracking_uri=url)
        exp = client.create_experiment("bench")
        run = client.create_run(exp).info.run_id
        now = int(time.time() * 1000)
        points = [Metric(f"m{i % 20}", 0.5, now, i // 20) for i in range(MLFLOW_REST_POINTS)]
        t = time.perf_counter()
        for i in range(0, len(points), 1000):
            client.log_batch(run, metrics=points[i : i + 1000])
        return MLFLOW_REST_POINTS / (time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="matih-bench-"))
    try:
        plain = plain_mlflow_in_process(root)
        ours = ours_in_process(root)
        rest = ours_over_rest(root)
        plain_rest = plain_mlflow_over_rest(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sdk = ours["SDK points/s (to disk)"]
    rows = [
        ("SDK ingestion, points/s", sdk, plain["log_batch points/s"], "log_batch"),
        ("SDK ingestion, points/s", sdk, plain["log_metric points/s"], "log_metric"),
        ("REST ingestion, points/s", rest, plain_rest, "log_batch via mlflow server"),
        (
            "log_metric cost, µs/call (lower is better)",
            ours["log_metric µs/call (buffered)"],
            plain["async log_metric µs/call"],
            "log_metric(synchronous=False)",
        ),
    ]
    print(f"{'measure':45} {'matih-ml':>12} {'MLflow':>12} {'ratio':>8}  MLflow path")
    for name, mine, theirs, how in rows:
        ratio = theirs / mine if "lower" in name else mine / theirs
        print(f"{name:45} {mine:12,.1f} {theirs:12,.1f} {ratio:7.1f}x  {how}")


if __name__ == "__main__":
    main()
