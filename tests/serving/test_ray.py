"""`matih-ml serve-models --ray` as a user starts it: a process on a local Ray, serving
a tenant's production model over HTTP, and leaving no Ray process behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import ServerProcess, embedded_settings, new_tenant_id, open_production_gate
from matih_ml.services import build_services

FEATURES = ["f0", "f1", "f2", "f3"]


def session_processes(sid: int) -> list[int]:
    """Live processes of session ``sid``: the server and every Ray process it started.

    Ray's own processes and workers keep their driver's session even after the driver
    exits, which is what makes them findable, and killable, by id alone.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is parenthesised and may hold spaces: fields start after it.
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(int(entry.name))
    return found


class RayServeProcess(ServerProcess):
    """`matih-ml serve-models --ray` in a session of its own, ready once /readyz is 200."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        # setsid execs in place (the child is no group leader), so the pid is the session
        # id that the local Ray's processes inherit. RAY_ADDRESS="" keeps it local.
        argv = ["setsid", sys.executable, "-m", "matih_ml.cli", "serve-models", "--ray"]
        argv += ["--port", "{port}", "--json"]
        try:
            super().__init__(log_path, argv, {**env, "RAY_ADDRESS": ""}, "/readyz")
        except BaseException:
            if hasattr(self, "proc"):
                self.stop()
            raise

    def ready_line(self, timeout_s: float = 30) -> dict:
        """The JSON that --json prints once serve.run returns (just after /readyz answers)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith('{"url"'):
                    return json.loads(line)
            time.sleep(0.2)
        raise AssertionError(f"no --json line:\n{self.output()}")

    def stop(self) -> list[int]:
        """Ctrl-C, as a user stops it, then SIGKILL what is left; returns what was left."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 15
        while (left := session_processes(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        super().stop()  # closes the log (the process has exited already)
        return left


@pytest.fixture
def store(tmp_path: Path):
    """A store of its own, with two tenants, a key each, and a model in production."""
    services = build_services(embedded_settings(tmp_path / "data"))
    acme = services.tenants.create_tenant(new_tenant_id("acme")).tenant_id
    other = services.tenants.create_tenant(new_tenant_id("glx")).tenant_id
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(60, 4)), columns=FEATURES)
    model = LogisticRegression().fit(x, (x["f0"] - x["f2"] > 0).astype(int))
    # A DataFrame example gives a column signature: the API's {"records": [...]} input.
    services.registry.register_model(
        acme, "churn", model, "sklearn", {"accuracy": 0.9}, {}, input_example=x.head(2)
    )
    open_production_gate(services.lifecycle, acme)
    for stage in ("staging", "production"):
        services.lifecycle.transition_stage(acme, "churn", "1", stage, actor="test")
    keys = {t: services.api_keys.create(t, "editor", "k").secret for t in (acme, other)}
    services.db.dispose()
    return tmp_path / "data", model, x, keys[acme], keys[other]


@pytest.mark.timeout(300)
def test_ray_serve_predicts_with_the_tenants_production_model(tmp_path, store) -> None:
    data_dir, model, x, acme_key, other_key = store
    started = time.monotonic()
    server = RayServeProcess(tmp_path / "ray.log", {"MATIH_DATA_DIR": str(data_dir)})
    ready_s = time.monotonic() - started
    try:
        ready = server.ready_line()
        assert ready["url"] == server.url and ready["ray_address"]
        # Ray's processes are in the server's session, so the leak check below sees them.
        assert len(session_processes(server.proc.pid)) > 3
        rows = x.iloc[:7]
        body = {"records": rows.to_dict(orient="records")}
        url = f"{server.url}/api/v1/models/churn/predict"
        with httpx.Client(timeout=60) as http:
            r = http.post(url, json=body, headers={"Authorization": f"Bearer {acme_key}"})
            assert r.status_code == 200, r.text
            assert r.json()["version"] == "1"
            assert r.json()["predictions"] == model.predict(rows).tolist()
            # Another tenant's key does not even learn that the model exists.
            r = http.post(url, json=body, headers={"Authorization": f"Bearer {other_key}"})
            assert r.status_code == 404, r.text
    finally:
        left = server.stop()
    print(f"ready after {ready_s:.1f}s, done after {time.monotonic() - started:.1f}s")
    assert left == [], f"Ray processes outlived the server: {left}\n{server.output()}"
    assert server.proc.returncode == 0, server.output()


def test_serve_models_without_ray_points_to_serve() -> None:
    from typer.testing import CliRunner

    from matih_ml.cli import app

    result = CliRunner().invoke(app, ["serve-models"])
    assert result.exit_code == 2
    assert "matih-ml serve" in result.output and "--ray" in result.output
