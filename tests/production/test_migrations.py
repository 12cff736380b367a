"""`matih-ml db upgrade` on PostgreSQL: both schemas, idempotent, safe when two run at
once; and a replica that refuses to serve an old schema unless told to migrate."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from production.stack import Stack


def test_a_fresh_database_is_reported_behind_and_serve_refuses_it(stack: Stack) -> None:
    status = stack.cli("db", "status", "--json", check=False)
    assert status.returncode == 1
    states = {s["store"]: s for s in json.loads(status.stdout)}
    assert set(states) == {"mlflow", "matih-tracking", "matih"}
    assert not any(s["up_to_date"] for s in states.values())
    assert "postgres@" in states["mlflow"]["url"] or "127.0.0.1" in states["mlflow"]["url"]

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    served = subprocess.run(
        [sys.executable, "-m", "matih_ml.cli", "serve", "--port", "1"],
        env={**clean, **stack.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == 1
    assert "matih-ml db upgrade" in served.stderr
    assert "Traceback" not in served.stderr


def test_two_upgrades_at_once_both_succeed_and_leave_both_schemas_at_head(stack: Stack) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "matih_ml.cli", "db", "upgrade", "--json"],
            env={**clean, **stack.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert all(s["current"] == s["head"] for s in json.loads(out))
    status = stack.cli("db", "status", "--json")
    assert all(s["up_to_date"] for s in json.loads(status.stdout))
    # Again: nothing to do, still fine.
    stack.cli("db", "upgrade")


def test_auto_migrate_lets_a_replica_start_on_an_empty_database(stack: Stack) -> None:
    replica = stack.replica(MATIH_AUTO_MIGRATE="1")
    ready = httpx.get(f"{replica.url}/readyz", timeout=30).json()
    assert ready["checks"] == {"database": "ok", "mlflow": "ok", "artifacts": "ok", "models": "ok"}
    assert all(s["up_to_date"] for s in json.loads(stack.cli("db", "status", "--json").stdout))
