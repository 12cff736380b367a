"""Retries and error answers, against a tiny local HTTP server that answers as it is told
(no timing assertions: attempts are counted)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port
from matih_ml.client import MatihClient
from matih_ml.errors import (
    ConflictError,
    GateFailedError,
    MatihError,
    NotFoundError,
    UnavailableError,
)

WHOAMI = {"tenant_id": "acme", "subject": "k", "owner": "k", "roles": ["viewer"], "via": "key"}
UNAVAILABLE = {
    "error": {"code": "UNAVAILABLE", "message": "The metadata database...", "details": {}}
}


class Script:
    """What the server answers, in order (the last answer repeats), and what it was sent."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str, bytes, dict[str, str]]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def then(
        self,
        status: int,
        body: object,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Script:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers.append((status, ctype, raw, headers or {}))
        return self


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            script.requests.append((self.command, self.path, dict(self.headers)))
            n = len(script.requests) - 1
            status, ctype, raw, extra = script.answers[min(n, len(script.answers) - 1)]
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def _client(url: str, retries: int = 3) -> MatihClient:
    return MatihClient(url, "mk_0123456789abcdef_secret", retries=retries, backoff=0)


def test_a_get_answered_503_twice_then_200_is_retried(scripted) -> None:
    url, script = scripted
    script.then(503, UNAVAILABLE).then(503, UNAVAILABLE).then(200, WHOAMI)
    with _client(url) as ml:
        assert ml.whoami().tenant_id == "acme"
    assert [r[:2] for r in script.requests] == [("GET", "/api/v1/whoami")] * 3
    headers = script.requests[0][2]
    assert headers["Authorization"] == "Bearer mk_0123456789abcdef_secret"
    assert headers["User-Agent"].startswith("matih-ml-client/")


def test_a_503_that_lasts_raises_unavailable_after_the_retries(scripted) -> None:
    url, script = scripted
    script.then(503, UNAVAILABLE)
    with _client(url, retries=2) as ml, pytest.raises(UnavailableError) as err:
        ml.models.get("churn")
    assert len(script.requests) == 3
    assert err.value.message == "The metadata database..."


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_are_retried_for_a_get(scripted, status) -> None:
    url, script = scripted
    script.then(status, b"<html>bad gateway</html>", "text/html").then(200, WHOAMI)
    with _client(url) as ml:
        assert ml.whoami().subject == "k"
    assert len(script.requests) == 2


def test_a_post_that_may_have_been_done_is_not_repeated(scripted) -> None:
    url, script = scripted
    script.then(503, UNAVAILABLE).then(200, {"metrics_written": 1})
    with _client(url) as ml, pytest.raises(UnavailableError):
        ml.runs.log_batch("0" * 32, metrics=[{"key": "loss", "value": 1.0}])
    assert len(script.requests) == 1


def test_an_idempotent_post_is_repeated(scripted) -> None:
    url, script = scripted
    answer = {
        "model_id": "churn",
        "version": "1",
        "target": "production",
        "predictions": [1],
        "latency_ms": 1.0,
    }
    script.then(503, UNAVAILABLE).then(200, answer)
    with _client(url) as ml:
        assert ml.serving.predict("churn", inputs=[[1.0]]).predictions == [1]
    assert [r[:2] for r in script.requests] == [("POST", "/api/v1/models/churn/predict")] * 2


THROTTLED = {"error": {"code": "LIMIT_EXCEEDED", "message": "over its points rate", "details": {}}}


def test_a_post_throttled_with_retry_after_is_sent_again_after_the_wait(scripted) -> None:
    # A per-tenant rate refuses before doing anything: even a log-batch is safe to repeat.
    url, script = scripted
    script.then(429, THROTTLED, headers={"Retry-After": "0"}).then(200, {"metrics_written": 1})
    with _client(url) as ml:
        done = ml.runs.log_batch("0" * 32, metrics=[{"key": "loss", "value": 1.0}])
    assert done.metrics_written == 1
    assert [r[0] for r in script.requests] == ["POST", "POST"]


def test_a_429_without_retry_after_or_asking_too_long_is_raised(scripted) -> None:
    from matih_ml.errors import LimitExceededError

    url, script = scripted
    script.then(429, THROTTLED)  # a tenant's limit of jobs: no Retry-After
    with _client(url) as ml, pytest.raises(LimitExceededError):
        ml.whoami()
    assert len(script.requests) == 1
    script.answers[:] = []
    script.then(429, THROTTLED, headers={"Retry-After": "3600"})
    with _client(url) as ml, pytest.raises(LimitExceededError):
        ml.whoami()
    assert len(script.requests) == 2


def test_a_closed_port_raises_unavailable_naming_the_url_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # bound, then released: nothing listens
    with _client(url, retries=2) as ml, pytest.raises(UnavailableError) as err:
        ml.whoami()
    assert err.value.message.startswith(f"The matih-ml server at {url} cannot be reached: ")
    assert "3 attempts" in err.value.message
    assert err.value.details == {"url": url, "attempts": 3}


def test_a_connection_refused_post_is_retried_too(scripted) -> None:
    # Never sent, so safe to send again whatever it is; counted through details.
    url = f"http://127.0.0.1:{free_port()}"
    with _client(url, retries=1) as ml, pytest.raises(UnavailableError) as err:
        ml.runs.create("exp")
    assert err.value.details["attempts"] == 2


def test_an_answer_that_is_not_ours_says_the_url_may_not_be_matih(scripted) -> None:
    url, script = scripted
    script.then(404, b"<html><body>Not here</body></html>", "text/html")
    with _client(url) as ml, pytest.raises(UnavailableError) as err:
        ml.models.get("churn")
    assert "may not be a matih-ml server" in err.value.message
    assert url in err.value.message and "HTTP 404 (text/html)" in err.value.message
    assert len(script.requests) == 1


def test_a_success_of_the_wrong_shape_says_the_url_may_not_be_matih(scripted) -> None:
    url, script = scripted
    script.then(200, {"hello": "world"})
    with _client(url) as ml, pytest.raises(UnavailableError) as err:
        ml.whoami()
    assert "may not be a matih-ml server" in err.value.message
    assert "tenant_id" in err.value.details["problem"]


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "NOT_FOUND", NotFoundError),
        (409, "GATE_FAILED", GateFailedError),
        (409, "CONFLICT", ConflictError),
    ],
)
def test_errors_map_by_code_and_keep_details(scripted, status, code, cls) -> None:
    url, script = scripted
    details = {"reasons": ["no approval"], "model_id": "churn"}
    script.then(status, {"error": {"code": code, "message": "said so", "details": details}})
    with _client(url) as ml, pytest.raises(cls) as err:
        ml.lifecycle.transition("churn", 1, "production")
    assert type(err.value) is cls
    assert (err.value.message, err.value.details, err.value.code) == ("said so", details, code)


def test_an_unknown_code_keeps_it_on_the_closest_class(scripted) -> None:
    url, script = scripted
    body = {"error": {"code": "METHOD_NOT_ALLOWED", "message": "Method Not Allowed"}}
    script.then(405, body)
    with _client(url) as ml, pytest.raises(MatihError) as err:
        ml.models.get("churn")
    assert err.value.code == "METHOD_NOT_ALLOWED"
    assert err.value.to_dict() == {
        "code": "METHOD_NOT_ALLOWED",
        "message": "Method Not Allowed",
        "details": {},
    }


def test_readyz_503_is_an_answer_not_an_error(scripted) -> None:
    url, script = scripted
    script.then(503, {"status": "unavailable", "checks": {"database": "unavailable: X"}})
    with _client(url) as ml:
        assert ml.health().status == "unavailable"
    assert len(script.requests) == 1
