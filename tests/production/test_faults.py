"""A replica whose PostgreSQL or S3 goes away mid-traffic, and one killed with SIGKILL
in the middle of a registration.

PostgreSQL and S3 sit behind TCP proxies; cutting a proxy resets every open
connection and refuses new ones, which is what the replica sees when the part stops.
"""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from production.stack import ROOT, Stack, admin_keys, client, upload

# A liveness bound, not a performance figure: a request that hangs would run into it.
NO_HANG_S = 30
# Uploads made while nothing is cut set the scene, and are not what these tests time: a
# replica's first upload starts the tenant's upload sandbox (seconds of imports, longer
# than NO_HANG_S on a loaded 2-core machine).
SETUP_S = 300


def _start(stack: Stack, **extra: str):
    stack.upgrade()
    keys = admin_keys(stack, "acme")
    return stack.replica(**extra), keys["acme"]


def _wait_until(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError("condition not reached in time")


def _unavailable(r: httpx.Response, dependency: str | None = None) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    body = r.json()["error"]
    assert body["code"] == "UNAVAILABLE"
    assert "Traceback" not in r.text
    if dependency:
        assert body["details"].get("dependency") == dependency, body


def _ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=NO_HANG_S)


def test_postgresql_down_mid_traffic_is_fast_503s_then_recovery(faulty_stack, sk_model) -> None:
    replica, key = _start(faulty_stack)
    acked: list[str] = []
    with client(replica.url, key, timeout=NO_HANG_S) as c:
        for _ in range(2):
            r = upload(c, "churn", sk_model, timeout=SETUP_S)
            assert r.status_code == 201
            acked.append(r.json()["registered_version"])
        run_id = c.post("/api/v1/runs", json={"experiment_name": "exp"}).json()["run_id"]

        faulty_stack.pg_proxy.cut()
        outage = [
            c.get("/api/v1/models"),
            c.get(f"/api/v1/models/churn/versions/{acked[0]}"),
            c.post("/api/v1/runs", json={"experiment_name": "exp"}),
            c.post(
                f"/api/v1/runs/{run_id}/log-batch",
                json={"metrics": [{"key": "loss", "value": 0.5, "step": 1}]},
            ),
            upload(c, "churn", sk_model),
            c.put("/api/v1/models/churn/stage", json={"version": acked[0], "stage": "staging"}),
        ]
        for r in outage:
            # Fails fast with a clear body, whether the key check (cached for 5 s) or the
            # route meets the database first.
            assert r.status_code == 503, (r.status_code, r.text)
            assert "Traceback" not in r.text and r.json()["error"]["code"] == "UNAVAILABLE"
            assert "database" in r.json()["error"]["message"]
        ready = _ready(replica.url)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unavailable")
        assert ready.json()["checks"]["artifacts"] == "ok"

        faulty_stack.pg_proxy.restore()
        _wait_until(lambda: _ready(replica.url).status_code == 200)
        # Recovered by itself, and nothing that was acknowledged is missing; nothing
        # that failed was half-written.
        versions = c.get("/api/v1/models/churn/versions").json()["items"]
        assert sorted(v["version"] for v in versions) == sorted(acked)
        history = c.get(f"/api/v1/runs/{run_id}/metrics/loss/history").json()["items"]
        assert history == []
        assert upload(c, "churn", sk_model).status_code == 201
    assert replica.proc.poll() is None  # the replica never died


def test_s3_down_mid_traffic_is_503_for_files_only_then_recovery(faulty_stack, sk_model) -> None:
    replica, key = _start(faulty_stack, AWS_MAX_ATTEMPTS="2")
    with client(replica.url, key, timeout=NO_HANG_S) as c:
        first = upload(c, "churn", sk_model, timeout=SETUP_S)
        assert first.status_code == 201
        run_id = c.post("/api/v1/runs", json={"experiment_name": "exp"}).json()["run_id"]

        faulty_stack.s3_proxy.cut()
        _unavailable(upload(c, "churn", sk_model), "artifacts")
        _unavailable(c.put(f"/api/v1/runs/{run_id}/artifacts/a.txt", content=b"hi"), "artifacts")
        # What needs no file still works.
        assert c.get("/api/v1/models/churn").status_code == 200
        ready = _ready(replica.url)
        assert ready.status_code == 503
        assert ready.json()["checks"]["artifacts"].startswith("unavailable")
        assert ready.json()["checks"]["database"] == "ok"

        faulty_stack.s3_proxy.restore()
        _wait_until(lambda: _ready(replica.url).status_code == 200)
        # The failed registration left no version behind.
        versions = c.get("/api/v1/models/churn/versions").json()["items"]
        assert [v["version"] for v in versions] == [first.json()["registered_version"]]
        again = upload(c, "churn", sk_model, timeout=SETUP_S)
        assert again.status_code == 201
        assert c.put(f"/api/v1/runs/{run_id}/artifacts/a.txt", content=b"hi").status_code == 201


# MLflow's SQL store deletes a version by marking it, and keeps the row.
_LIVE = "v.current_stage <> 'Deleted_Internal'"


def _pending_versions(pg_url: str) -> list[tuple[str, int]]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT t.name, t.version FROM model_version_tags t JOIN model_versions v "
                    "ON v.name = t.name AND v.version = t.version AND v.workspace = t.workspace "
                    f"WHERE t.key = 'matih.registration' AND t.value = 'pending' AND {_LIVE}"
                )
            ).all()
        return [(r[0], int(r[1])) for r in rows]
    finally:
        engine.dispose()


def _mlflow_versions(pg_url: str) -> list[tuple[str, int]]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(f"SELECT name, version FROM model_versions v WHERE {_LIVE}")
                )
            ]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sigkill_mid_registration_leaves_nothing_visible_and_start_up_cleans_it(
    faulty_stack, s3_server, sk_model
) -> None:
    replica, key = _start(faulty_stack)
    other = faulty_stack.replica()
    with client(other.url, key, timeout=NO_HANG_S) as c:
        assert upload(c, "churn", sk_model, timeout=SETUP_S).status_code == 201  # v1, whole
    # Slow S3 down, so that the registry's copy takes seconds, and register on `replica`.
    faulty_stack.s3_proxy.delay_s = 0.12
    doomed = threading.Thread(
        target=lambda: _swallow(lambda: upload(client(replica.url, key, 300), "churn", sk_model)),
        daemon=True,
    )
    doomed.start()
    _wait_until(lambda: _pending_versions(faulty_stack.direct_pg_url), timeout=240)
    time.sleep(0.3)  # some of its files are on their way
    replica.proc.kill()  # SIGKILL: no cleanup code runs
    replica.proc.wait(timeout=30)
    faulty_stack.s3_proxy.delay_s = 0.0
    [(name, number)] = _pending_versions(faulty_stack.direct_pg_url)
    assert (name, number) == ("churn", 2)

    # The half-registered version exists in MLflow, and no reader sees it.
    with client(other.url, key, timeout=NO_HANG_S) as c:
        assert [v["version"] for v in c.get("/api/v1/models/churn/versions").json()["items"]] == [
            "1"
        ]
        assert c.get("/api/v1/models/churn/versions/2").status_code == 404
        assert c.get("/api/v1/models/churn").json()["versions"] == ["1"]

    # A start-up (with no grace period) removes it: the row, its files, its run.
    faulty_stack.replica(MATIH_REGISTRATION_GRACE_S="0")
    assert ("churn", 2) not in _mlflow_versions(faulty_stack.direct_pg_url)
    assert _pending_versions(faulty_stack.direct_pg_url) == []
    s3 = s3_server.client()
    prefix = ROOT.removeprefix("s3://mlflow/") + "/acme/models/churn/2/"
    assert s3.list_objects_v2(Bucket="mlflow", Prefix=prefix).get("KeyCount", 0) == 0
    # Its registration run is gone too: active registration runs are those of live versions.
    assert _active_registration_runs(faulty_stack.direct_pg_url) == 1
    with client(other.url, key, timeout=NO_HANG_S) as c:
        assert upload(c, "churn", sk_model, timeout=SETUP_S).status_code == 201
        versions = [v["version"] for v in c.get("/api/v1/models/churn/versions").json()["items"]]
        assert versions == ["3", "1"]


def _active_registration_runs(pg_url: str) -> int:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                    "WHERE tags.key = 'matih.run_kind' AND runs.lifecycle_stage = 'active'"
                )
            ).scalar_one()
    finally:
        engine.dispose()


def _swallow(fn) -> None:
    # The replica is killed under it: the client sees a broken connection.
    with contextlib.suppress(httpx.HTTPError):
        fn()
