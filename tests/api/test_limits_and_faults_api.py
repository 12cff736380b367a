"""Bodies over the limit (413) and a backend that is down (503)."""

import httpx
import pytest

from api.helpers import error, new_run, ok
from conftest import LiveServer, embedded_settings
from matih_ml.api.app import create_app


@pytest.fixture(scope="module")
def small_limit_api(services):
    from dataclasses import replace

    settings = services.settings.model_copy(update={"max_upload_bytes": 1024})
    server = LiveServer(create_app(services=replace(services, settings=settings)))
    yield server
    server.stop()


def test_bodies_over_the_limit_are_413(small_limit_api, acme) -> None:
    run_id = new_run(acme.editor)
    h = {"Authorization": f"Bearer {acme.keys['editor']}"}
    url = f"{small_limit_api.url}/api/v1/runs/{run_id}"
    err = error(
        httpx.put(f"{url}/artifacts/big.bin", content=b"x" * 4096, headers=h),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert err["details"]["limit"] == 1024

    def chunks():
        for _ in range(8):
            yield b"y" * 512

    # No Content-Length: the body is counted as it streams.
    error(httpx.put(f"{url}/artifacts/chunked.bin", content=chunks(), headers=h), 413)
    error(
        httpx.post(
            f"{small_limit_api.url}/api/v1/models",
            headers=h,
            data={"name": "m", "framework": "sklearn"},
            files={"file": ("m.pkl", b"z" * 4096)},
        ),
        413,
    )
    assert ok(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts")) == []


def test_mlflow_backend_down_is_503_with_a_clear_message(tmp_path, monkeypatch) -> None:
    # A remote MLflow that is not there: a real connection refused, no retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    from conftest import free_port
    from matih_ml.services import build_services

    port = free_port()
    settings = embedded_settings(tmp_path).model_copy(
        update={
            "tracking_uri_env": f"http://127.0.0.1:{port}",
            "database_url_env": f"sqlite:///{tmp_path / 'svc.db'}",
        }
    )
    services = build_services(settings)
    key = services.api_keys.create("acme", "admin").secret
    server = LiveServer(create_app(services=services))
    try:
        h = {"Authorization": f"Bearer {key}"}
        err = error(
            httpx.get(f"{server.url}/api/v1/models", headers=h, timeout=30), 503, "UNAVAILABLE"
        )
        assert "Traceback" not in err["message"]
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["mlflow"].startswith("unavailable")
    finally:
        server.stop()
