"""`matih-ml serve` as a user starts it: a real process on a loopback port."""

import os
import re
import subprocess
import sys
import time

import httpx

from conftest import free_port


def _start(data_dir, log_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    env["MATIH_DATA_DIR"] = str(data_dir)
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "matih_ml.cli", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(log_path.read_text())


def _stop(proc, log) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_first_start_creates_demo_tenant_and_prints_an_admin_key_once(tmp_path) -> None:
    proc, url, log = _start(tmp_path / "data", tmp_path / "first.log")
    try:
        text = (tmp_path / "first.log").read_text()
        key = re.search(r"mk_[0-9a-f]{16}_\S+", text).group(0)
        h = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{url}/api/v1/models", headers=h).json() == {
            "items": [],
            "next_page_token": None,
        }
        created = httpx.post(f"{url}/api/v1/keys", headers=h, json={"role": "viewer"})
        assert created.status_code == 201 and created.json()["tenant_id"] == "demo"
    finally:
        _stop(proc, log)
    proc, url, log = _start(tmp_path / "data", tmp_path / "second.log")
    try:
        assert "mk_" not in (tmp_path / "second.log").read_text()
        assert httpx.get(f"{url}/api/v1/models", headers=h).status_code == 200
    finally:
        _stop(proc, log)
