"""The bulk metric path and buffered logging: what they write reads back through stock
MLflow exactly as MLflow's own writes do, and no point is ever lost or doubled."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from api.helpers import error, new_run, ok
from matih_ml.errors import ValidationError
from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
from matih_ml.tenancy import tenant_scope
from matih_ml.tracking import RunConfig
from matih_ml.tracking.buffer import MetricBuffer


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple]:
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def test_bulk_writes_read_back_through_stock_mlflow_like_log_batch(tracker, tenant) -> None:
    # Out of order, repeated steps, a duplicate point, two keys: MLflow's own rules must hold.
    points = [
        ("loss", 0.5, 1000, 3),
        ("loss", 0.9, 1000, 1),
        ("loss", 0.7, 2000, 3),
        ("loss", 0.7, 2000, 3),
        ("acc", 0.1, 1500, 0),
        ("acc", 0.2, 1400, 0),
    ]
    with (
        tracker.start_run("bulk", RunConfig(tenant_id=tenant)) as ours,
        tracker.start_run("bulk", RunConfig(tenant_id=tenant)) as theirs,
    ):
        pass
    client = tracker.backend.client
    with tenant_scope(tenant):
        BulkMetricWriter(client).write(ours.run_id, points)
        client.log_batch(theirs.run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in points])
        stock = MlflowClient(tracking_uri=tracker.backend.tracking_uri)
        for key in ("loss", "acc"):
            assert _history(stock, ours.run_id, key) == _history(stock, theirs.run_id, key)
        assert stock.get_run(ours.run_id).data.metrics == stock.get_run(theirs.run_id).data.metrics
        assert stock.get_run(ours.run_id).data.metrics == {"loss": 0.7, "acc": 0.1}


def test_buffered_logging_stores_every_point_once_by_run_end(tracker, tenant) -> None:
    with tracker.start_run("buffered", RunConfig(tenant_id=tenant)) as run:
        for step in range(20_000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_metric("lr", 0.1, step=step)
        run.log_metrics({"a": 1.0, "b": 2}, step=7)
    with tenant_scope(tenant):
        client = tracker.backend.client
        loss = client.get_metric_history(run.run_id, "loss")
        assert sorted(m.step for m in loss) == list(range(20_000))
        assert len(client.get_metric_history(run.run_id, "lr")) == 20_000
        assert client.get_run(run.run_id).data.metrics["b"] == 2.0


def test_bad_points_are_refused_at_the_call_and_nothing_is_queued(tracker, tenant) -> None:
    with tracker.start_run("bad", RunConfig(tenant_id=tenant)) as run:
        for call in (
            lambda: run.log_metric("ok", float("nan")),
            lambda: run.log_metric("ok", "1"),
            lambda: run.log_metric("bad key!", 1.0),
            lambda: run.log_metric("ok", 1.0, step=-1),
            lambda: run.log_metrics({"ok": 1.0, "bad": float("inf")}),
        ):
            with pytest.raises(ValidationError):
                call()
        run.flush()
        assert run._buffer is None or run._buffer.pending == 0
    with tenant_scope(tenant):
        assert tracker.backend.client.get_run(run.run_id).data.metrics == {}


def test_points_that_cannot_be_stored_fail_the_run(tracker, tenant, monkeypatch) -> None:
    def broken(self, run_id, points):
        raise ConnectionError("store down")

    monkeypatch.setattr(BulkMetricWriter, "write", broken)
    with (
        pytest.raises(ConnectionError),
        tracker.start_run("doomed", RunConfig(tenant_id=tenant)) as run,
    ):
        run.log_metric("a", 1.0)
    monkeypatch.undo()
    with tenant_scope(tenant):
        assert tracker.backend.client.get_run(run.run_id).info.status == "FAILED"


def test_a_full_buffer_makes_the_caller_wait_and_loses_nothing() -> None:
    stored: list = []
    gate = threading.Event()

    def write(batch):
        gate.wait(10)
        stored.extend(batch)

    buf = MetricBuffer(write, capacity=100, batch=10, interval_s=0.01)
    waited = threading.Thread(target=lambda: [buf.add("m", float(i), i) for i in range(500)])
    waited.start()
    time.sleep(0.3)
    assert waited.is_alive()  # blocked: the buffer is full and nothing can be written
    assert buf.pending <= 101
    gate.set()
    waited.join(30)
    buf.close()
    assert [p[3] for p in stored] == list(range(500))  # every point, once, in order


def test_a_failing_store_keeps_the_points_and_flush_reports_it() -> None:
    stored: list = []
    down = {"on": True}

    def write(batch):
        if down["on"]:
            raise ConnectionError("store down")
        stored.extend(batch)

    buf = MetricBuffer(write, batch=10, interval_s=0.01)
    for i in range(50):
        buf.add("m", float(i), i)
    with pytest.raises(ConnectionError):
        buf.flush()
    assert buf.pending == 50 and stored == []
    down["on"] = False
    buf.flush()
    buf.close()
    assert [p[3] for p in stored] == list(range(50))


def test_points_still_queued_at_a_normal_exit_are_written(tmp_path, settings, tenant) -> None:
    script = f"""
from matih_ml.tracking import ExperimentTracker, RunConfig
from conftest import embedded_settings
from pathlib import Path
t = ExperimentTracker(settings=embedded_settings(Path({str(settings.data_dir)!r})))
cm = t.start_run("exit", RunConfig(tenant_id={tenant!r}))
run = cm.__enter__()
for i in range(5000):
    run.log_metric("x", float(i), step=i)
print(run.run_id)
"""  # the run is never ended: only the exit hook can store the points
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    from matih_ml.services import build_services

    services = build_services(settings)
    with tenant_scope(tenant):
        history = services.backend.client.get_metric_history(run_id, "x")
    assert len(history) == 5000


# ------------------------------------------------------------------- REST


def test_metrics_batch_takes_columns_rows_and_gzip(acme) -> None:
    run_id = new_run(acme.editor)
    url = f"/api/v1/runs/{run_id}/metrics:batch"
    n = 5000
    columns = {"keys": ["loss"] * n, "values": [i / n for i in range(n)], "steps": list(range(n))}
    assert ok(acme.editor.post(url, json=columns))["metrics_written"] == n
    rows = {"metrics": [{"key": "acc", "value": 0.5, "step": 1, "timestamp": 1}]}
    assert ok(acme.editor.post(url, json=rows))["metrics_written"] == 1
    packed = gzip.compress(json.dumps({"keys": ["g"] * 3, "values": [1, 2, 3]}).encode())
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    assert ok(acme.editor.post(url, content=packed, headers=headers))["metrics_written"] == 3
    history = ok(
        acme.viewer.get(f"/api/v1/runs/{run_id}/metrics/loss/history", params={"max_results": 1000})
    )
    assert [p["step"] for p in history["items"]] == list(range(1000))
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    assert run["metrics"] == {"loss": (n - 1) / n, "acc": 0.5, "g": 3.0}


@pytest.mark.parametrize(
    "body",
    [
        {"keys": ["a", "b"], "values": [1.0]},
        {"keys": ["a"], "values": [1.0], "steps": [-1]},
        {"keys": ["a"], "values": ["x"]},
        {"keys": ["a"], "values": [10**400]},
        {"keys": ["../x"], "values": [1.0]},
        {"keys": ["a"], "values": [1.0], "timestamps": [1.5]},
        {"keys": ["a"] * 200_001, "values": [1.0] * 200_001},
        {"metrics": [{"key": "a"}]},
        {"metrics": [{"key": "a", "value": 1, "extra": 1}]},
        {"values": [1.0]},
        [1, 2],
    ],
)
def test_bad_batches_are_422_and_write_nothing(acme, body) -> None:
    run_id = new_run(acme.editor)
    error(acme.editor.post(f"/api/v1/runs/{run_id}/metrics:batch", json=body), 422)
    assert ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))["metrics"] == {}


def test_bad_encodings_are_4xx(acme) -> None:
    run_id = new_run(acme.editor)
    url = f"/api/v1/runs/{run_id}/metrics:batch"
    h = {"content-type": "application/json"}
    error(
        acme.editor.post(url, content=b"\x1f\x8bnope", headers={**h, "content-encoding": "gzip"}),
        422,
    )
    error(acme.editor.post(url, content=b"{}", headers={**h, "content-encoding": "br"}), 422)
    error(acme.editor.post(url, content=b"{nope", headers=h), 422)
    bomb = gzip.compress(b" " * (300 * 1024 * 1024))  # 300 MiB of spaces, 300 KiB packed
    error(acme.editor.post(url, content=bomb, headers={**h, "content-encoding": "gzip"}), 413)
