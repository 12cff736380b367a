"""Helpers for API tests: everything over HTTP, as a client would."""

from __future__ import annotations

from pathlib import Path

import httpx


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else {}


def error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    assert "Traceback" not in response.text
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def new_run(client: httpx.Client, experiment: str = "exp", **extra) -> str:
    return ok(client.post("/api/v1/runs", json={"experiment_name": experiment, **extra}), 201)[
        "run_id"
    ]


def run_with_model(client: httpx.Client, model_dir: Path, experiment: str = "train") -> str:
    """A run whose artifacts hold an MLflow model at 'model', uploaded over HTTP."""
    run_id = new_run(client, experiment)
    for f in model_dir.rglob("*"):
        if f.is_file():
            rel = f.relative_to(model_dir).as_posix()
            ok(
                client.put(f"/api/v1/runs/{run_id}/artifacts/model/{rel}", content=f.read_bytes()),
                201,
            )
    ok(
        client.post(
            f"/api/v1/runs/{run_id}/log-batch",
            json={"metrics": [{"key": "accuracy", "value": 0.9}], "params": {"C": 1}},
        )
    )
    ok(client.post(f"/api/v1/runs/{run_id}/end", json={"status": "FINISHED"}))
    return run_id


def register(client: httpx.Client, model_dir: Path, name: str = "churn") -> dict:
    run_id = run_with_model(client, model_dir)
    return ok(client.post("/api/v1/models", json={"name": name, "run_id": run_id}), 201)


# A valid job whose table nobody wrote: it is queued, then fails reading its data.
TRAINING_JOB = {
    "name": "nightly",
    "model_name": "churn",
    "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    "data": {"kind": "table", "path": "missing.csv", "target": "label"},
    "evaluation": {"primary_metric": "accuracy"},
    "register": False,
}


def wait_for_job(
    client: httpx.Client, job_id: str, statuses: tuple[str, ...], timeout: float = 60
) -> dict:
    """Poll a job until its status is one of ``statuses``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = ok(client.get(f"/api/v1/training-jobs/{job_id}"))
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
