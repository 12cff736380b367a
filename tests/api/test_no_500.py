"""Input that once reached a 500 (issue 16), each answered with a 4xx and our error body,
and each followed by a second request on the same keep-alive connection. Then the last
resort: a 500 that still happens leaves the connection open."""

from __future__ import annotations

import email.message
import email.utils
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from api.helpers import error, ok, register, run_with_model
from conftest import ApiTenant, free_port, new_tenant_id

DEEP = 100_000


class Connection:
    """One httpx client (so one pooled connection) that notes each answer's local port:
    the same port on two answers means they came over one connection."""

    def __init__(self, url: str, key: str | None = None) -> None:
        self.ports: list[int] = []
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(
            base_url=url, timeout=60, headers=headers, event_hooks={"response": [self._saw]}
        )

    def _saw(self, response: httpx.Response) -> None:
        # Read while the answer is open: the connection is certainly still up then.
        stream = response.extensions["network_stream"]
        self.ports.append(stream.get_extra_info("client_addr")[1])

    def then_still_usable(self, path: str = "/api/v1/whoami") -> None:
        """A second request succeeds, on the connection the previous answer came over."""
        ok(self.client.get(path))
        assert len(self.ports) >= 2 and self.ports[-1] == self.ports[-2], self.ports

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def tenant(api, services, saved_sklearn_model) -> Iterator[ApiTenant]:
    """A tenant with a model 'churn' in production and a run, set up once for the module."""
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("n5")).tenant_id)
    ok(t.admin.put("/api/v1/policy", json={"production": {"require_approval": False}}))
    version = register(t.editor, saved_sklearn_model)["registered_version"]
    for stage in ("staging", "production"):
        body = {"version": version, "stage": stage}
        ok(t.editor.put("/api/v1/models/churn/stage", json=body))
    t.run_id = run_with_model(t.editor, saved_sklearn_model)  # type: ignore[attr-defined]
    yield t
    t.close()


@pytest.fixture
def viewer(api, tenant) -> Iterator[Connection]:
    c = Connection(api.url, tenant.keys["viewer"])
    yield c
    c.close()


@pytest.fixture
def editor(api, tenant) -> Iterator[Connection]:
    c = Connection(api.url, tenant.keys["editor"])
    yield c
    c.close()


def _nested(depth: int, around: str = "{}") -> bytes:
    """``around`` with a list nested ``depth`` deep in place of its ``{}``."""
    return around.replace("{}", "[" * depth + "]" * depth, 1).encode()


JSON = {"content-type": "application/json"}


# ------------------------------------------------------------------ model outputs


def test_an_onnx_classifier_from_skl2onnx_answers_json(editor, tenant, tmp_path) -> None:
    # Its output is an int64 label and a ZipMap of class probabilities: both must convert.
    import mlflow.onnx
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    est = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    folder = tmp_path / "onnx"
    mlflow.onnx.save_model(to_onnx(est, x), str(folder), pip_requirements=["onnxruntime"])
    run_id = run_with_model(editor.client, folder)
    v = ok(editor.client.post("/api/v1/models", json={"name": "onx", "run_id": run_id}), 201)
    answer = ok(
        editor.client.post(
            "/api/v1/models/onx/predict",
            params={"version": v["registered_version"]},
            json={"inputs": x[:3].tolist()},
        )
    )
    rows = answer["predictions"]
    assert [r["output_label"] for r in rows] == est.predict(x[:3]).tolist()
    assert all(abs(sum(r["output_probability"].values()) - 1) < 1e-5 for r in rows)
    editor.then_still_usable()


# ------------------------------------------------------------------ deeply nested JSON


@pytest.mark.parametrize(
    "route",
    ["models/churn/predict", "models/churn/predict:batch"],
)
def test_deep_json_on_predict_is_422(viewer, route) -> None:
    # A viewer's key is enough to reach the parser.
    body = _nested(DEEP, '{"records": {}}')
    found = error(viewer.client.post(f"/api/v1/{route}", content=body, headers=JSON), 422)
    assert found["code"] == "VALIDATION_ERROR" and "nested too deeply" in found["message"]
    viewer.then_still_usable()


def test_deep_json_on_metrics_batch_is_422(editor, tenant) -> None:
    body = _nested(DEEP, '{"keys": ["loss"], "values": {}}')
    url = f"/api/v1/runs/{tenant.run_id}/metrics:batch"
    found = error(editor.client.post(url, content=body, headers=JSON), 422, "VALIDATION_ERROR")
    assert "nested too deeply" in found["message"] and found["details"] == {"field": "body"}
    editor.then_still_usable()


@pytest.mark.parametrize(
    "route",
    [
        "runs",  # FastAPI parses it: through JsonBodyRoute
        "runs/{run}/log-batch",
        "training-jobs",  # FastAPI parses it into Any; our parser checks it
        "models",  # pydantic parses it from the bytes
        "webhooks",
    ],
)
def test_deep_json_on_other_json_routes_is_422(api, tenant, route) -> None:
    admin = Connection(api.url, tenant.keys["admin"])
    try:
        url = "/api/v1/" + route.format(run=tenant.run_id)
        body = _nested(DEEP, '{"tags": {"a": {}}}')
        error(admin.client.post(url, content=body, headers=JSON), 422, "VALIDATION_ERROR")
        admin.then_still_usable()
    finally:
        admin.close()


def _routes(routes: list) -> Iterator:
    for route in routes:
        # FastAPI keeps an included router whole, as one entry of the app's routes.
        if hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)
        else:
            yield route


def test_every_body_fastapi_parses_goes_through_our_parser(api) -> None:
    from matih_ml.api.body import JsonBodyRoute

    with_body = [r for r in _routes(api.server.config.app.routes) if getattr(r, "body_field", None)]
    assert with_body, "no route with a body found: has FastAPI changed how it keeps routes?"
    assert [r.path for r in with_body if not isinstance(r, JsonBodyRoute)] == []


@pytest.mark.parametrize("depth", [200, 600, 900])
@pytest.mark.parametrize(
    "route",
    ["models/churn/predict", "models/churn/predict:batch", "runs/{run}/metrics:batch"],
)
def test_nesting_just_under_the_parsers_limit_is_a_4xx_too(editor, tenant, route, depth) -> None:
    # Deep enough to be odd, shallow enough to parse: whatever reads it next must cope.
    url = "/api/v1/" + route.format(run=tenant.run_id)
    for around in ('{"records": [{"f0": {}}]}', '{"inputs": {}}', '{"keys": ["a"], "values": {}}'):
        answer = editor.client.post(url, content=_nested(depth, around), headers=JSON)
        assert 400 <= answer.status_code < 500, (around, answer.status_code, answer.text[:300])
        error(answer, answer.status_code)
    editor.then_still_usable()


# ------------------------------------------------------------------ production at a time


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_production_at_a_time_out_of_range_is_422_naming_at(viewer, at) -> None:
    found = error(
        viewer.client.get("/api/v1/models/churn/production", params={"at": at}),
        422,
        "VALIDATION_ERROR",
    )
    assert found["details"]["field"] == "at" and "at" in found["message"]
    viewer.then_still_usable()


def test_production_at_the_ends_of_time_in_utc_still_answers(viewer) -> None:
    for at in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00"):
        got = ok(viewer.client.get("/api/v1/models/churn/production", params={"at": at}))
        assert got["version"] == ("1" if at.startswith("9999") else None)


# ------------------------------------------------------------------ artifact names


def _disposition(value: str) -> tuple[str, str]:
    """(the quoted ASCII filename, the decoded filename*) of a Content-Disposition."""
    msg = email.message.Message()
    msg["content-disposition"] = value
    params = msg.get_params(header="content-disposition")
    assert params and params[0] == ("attachment", ""), params
    plain = [v for k, v in params[1:] if k == "filename" and isinstance(v, str)]
    extended = [v for k, v in params[1:] if k == "filename" and isinstance(v, tuple)]
    assert len(plain) == 1 and len(extended) == 1, params
    assert extended[0][0].upper() == "UTF-8", extended
    return plain[0], email.utils.collapse_rfc2231_value(extended[0])


@pytest.mark.parametrize(
    "name",
    ["报告.txt", 'say "hi".txt', 'x";filename=y.txt', "naïve résumé.csv", "plain.txt"],
)
def test_artifact_download_names_any_file_by_rfc_6266(editor, tenant, name) -> None:
    data = f"contents of {name}".encode()
    url = f"/api/v1/runs/{tenant.run_id}/artifacts/files/{quote(name)}"
    ok(editor.client.put(url, content=data), 201)
    got = editor.client.get(url)
    assert got.status_code == 200 and got.content == data
    value = got.headers["content-disposition"]
    assert value.isascii(), value
    fallback, exact = _disposition(value)
    assert exact == name
    assert fallback.isascii() and '"' not in fallback and "\\" not in fallback
    if name.isascii() and '"' not in name and "\\" not in name:
        assert fallback == name
    editor.then_still_usable()


def test_every_download_names_its_file_through_one_helper() -> None:
    import matih_ml

    root = Path(matih_ml.__file__).parent
    writers = [p for p in root.rglob("*.py") if "content-disposition" in p.read_text().lower()]
    assert writers == [root / "api" / "downloads.py"]


def test_content_disposition_escapes_what_a_quoted_string_cannot_hold() -> None:
    from matih_ml.api.downloads import content_disposition

    for name in ['a\\b".txt', "tab\there\r\n.txt", "\x7f", "📈"]:
        value = content_disposition(name)
        assert value.isascii() and "\r" not in value and "\n" not in value
        fallback, exact = _disposition(value)
        assert exact == name and not set(fallback) & set('"\\\t\r\n\x7f'), fallback


# ------------------------------------------------------------------ a 500 keeps the connection


class _Server:
    """uvicorn on a loopback port, without the lifespan (so no background workers)."""

    def __init__(self, app: FastAPI) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        config = uvicorn.Config(app, port=port, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def faulty(services) -> Iterator[_Server]:
    """Our app, as create_app builds it, with two routes that fail on purpose."""
    from matih_ml.api.app import create_app

    app = create_app(services=services)

    @app.get("/test/boom")
    async def boom() -> dict:
        raise RuntimeError("secret internals: /var/lib/matih")

    @app.get("/test/boom-in-thread")
    def boom_in_thread() -> dict:
        raise KeyError("not a 404")

    @app.get("/test/port")
    async def port(request: Request) -> dict:
        assert request.client is not None
        return {"port": request.client.port}

    server = _Server(app)
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/test/boom", "/test/boom-in-thread"])
def test_a_500_is_our_error_body_and_keeps_the_connection(faulty, path, caplog) -> None:
    conn = Connection(faulty.url)
    try:
        before = ok(conn.client.get("/test/port"))["port"]
        with caplog.at_level("ERROR"):
            answer = conn.client.get(path)
        found = error(answer, 500, "INTERNAL")
        assert "secret" not in answer.text and "not a 404" not in answer.text
        assert found["message"] == "An internal error occurred."
        # The traceback is in the log, not the answer.
        assert any(r.exc_info for r in caplog.records), caplog.records
        # The server saw the next request come from the same client port: one connection.
        assert ok(conn.client.get("/test/port"))["port"] == before
        assert len(set(conn.ports)) == 1, conn.ports
    finally:
        conn.close()


def test_a_500_on_one_socket_then_a_200_on_the_same_socket(faulty) -> None:
    import socket

    host, port = faulty.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        reader = sock.makefile("rb")
        for path, status in (("/test/boom", 500), ("/test/port", 200)):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            line = reader.readline()
            assert line.split()[1] == str(status).encode(), line
            length = 0
            while (header := reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                assert name.lower() != "connection" or "close" not in value.lower()
            reader.read(length)
