"""The seed's ExperimentTracker against a real `matih-ml serve`, from another process that
has only the URL and a key, in a fresh folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from conftest import ServeProcess

pytestmark = pytest.mark.slow

CLIENT = textwrap.dedent(
    """
    import json, sys
    from matih_ml.errors import MatihError
    from matih_ml.tracking.tracker import ExperimentTracker, RunConfig

    url, tenant = sys.argv[1], sys.argv[2]
    tracker = ExperimentTracker(tracking_uri=url)
    out = {}
    try:
        with tracker.start_run(
            "seed-remote", run_config=RunConfig(tenant_id=tenant, user_id="ana", run_name="r1")
        ) as run:
            run.log_params({"lr": 0.01})
            for i in range(300):
                run.log_metric("loss", 1.0 / (i + 1), step=i)
            run.set_tag("team", "risk")
            with open("notes.txt", "w") as f:
                f.write("hello")
            run.log_artifact("notes.txt")
        out["run_id"] = run.run_id
        out["artifact_uri"] = run.artifact_uri
    except MatihError as exc:
        out["error"] = [type(exc).__name__, exc.message]
    print("RESULT " + json.dumps(out))
    """
)


def _cli(data: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    env["MATIH_DATA_DIR"] = str(data)
    done = subprocess.run(
        [sys.executable, "-m", "matih_ml.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _key(data: Path, tenant: str, role: str) -> str:
    return json.loads(_cli(data, "keys", "create", "--tenant", tenant, "--role", role, "--json"))[
        "key"
    ]


def _client(folder: Path, url: str, token: str, tenant: str) -> dict:
    folder.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "MLFLOW_TRACKING_TOKEN": token,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, url, tenant],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tracker-remote")
    data = root / "srv"
    _cli(data, "tenants", "create", "acme")
    _cli(data, "tenants", "create", "globex")
    keys = {"acme": _key(data, "acme", "editor"), "globex": _key(data, "globex", "editor")}
    serve = ServeProcess(root / "serve.log", {"MATIH_DATA_DIR": str(data)})
    try:
        yield {"url": serve.url, "keys": keys, "root": root}
    finally:
        serve.stop()


def test_the_tracker_logs_through_the_protocol_and_creates_nothing_locally(server) -> None:
    url, key = server["url"], server["keys"]["acme"]
    folder = server["root"] / "laptop"
    out = _client(folder, url, key, "acme")
    assert "error" not in out, out
    assert out["artifact_uri"].startswith("mlflow-artifacts:/")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]

    headers = {"Authorization": f"Bearer {key}"}
    run = httpx.get(f"{url}/api/v1/runs/{out['run_id']}", headers=headers).json()
    assert run["status"] == "FINISHED"
    assert run["params"] == {"lr": "0.01"}
    assert run["tags"]["matih.tenant_id"] == "acme"
    assert run["tags"]["matih.user_id"] == "ana"
    assert run["tags"]["team"] == "risk"
    history = httpx.get(
        f"{url}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": out["run_id"], "metric_key": "loss"},
        headers=headers,
    ).json()["metrics"]
    assert sorted(m["step"] for m in history) == list(range(300))
    files = httpx.get(
        f"{url}/api/2.0/mlflow/artifacts/list", params={"run_id": out["run_id"]}, headers=headers
    ).json()["files"]
    assert [f["path"] for f in files] == ["notes.txt"]
    events = httpx.get(f"{url}/api/v1/events", params={"after": "0"}, headers=headers).json()
    kinds = [e["type"] for e in events["items"] if e.get("subject") == f"run/{out['run_id']}"]
    assert kinds == ["MODEL_TRAINING_STARTED", "MODEL_TRAINING_COMPLETED"]

    # The other tenant's key sees nothing of it.
    other = {"Authorization": f"Bearer {server['keys']['globex']}"}
    assert httpx.get(f"{url}/api/v1/runs/{out['run_id']}", headers=other).status_code == 404


def test_a_tenant_id_other_than_the_keys_is_refused_naming_both(server) -> None:
    out = _client(server["root"] / "wrong", server["url"], server["keys"]["acme"], "globex")
    name, message = out["error"]
    assert name == "ValidationError"
    assert "'globex'" in message and "'acme'" in message and server["url"] in message


def test_an_unreachable_server_is_named_and_nothing_is_created(server) -> None:
    folder = server["root"] / "offline"
    out = _client(folder, "http://127.0.0.1:9", server["keys"]["acme"], "acme")
    name, message = out["error"]
    assert name == "UnavailableError"
    assert "http://127.0.0.1:9" in message
    assert list(folder.iterdir()) == []
