"""Per-tenant limits over HTTP: the 429 and its fields follow the limits, per tenant, on
our REST routes and MLflow's; a full storage refuses an upload and writes nothing; and
/metrics shows each tenant's throttled requests and usage."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import httpx
import pytest

from api.helpers import error, new_run, ok
from conftest import LiveServer
from matih_ml.api.app import create_app

SCRAPE = "scrape-token-for-limits"


def _server(services, **limits):
    settings = services.settings.model_copy(update={"metrics_token": SCRAPE, **limits})
    return LiveServer(create_app(services=replace(services, settings=settings)))


@pytest.fixture(scope="module")
def request_limited(services):
    # 0.6 requests a second, 10 s of them at once: a bucket of 6 that refills a request
    # every 1.7 s, so that six quick requests see it empty whatever the machine's load.
    server = _server(services, limit_requests_per_s=0.6, limit_burst_s=10)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quota_limited(services):
    # No request rate; 1,000 points a second, 2,000 at once; 2,048 bytes stored.
    server = _server(
        services,
        limit_requests_per_s=0,
        limit_points_per_s=1000,
        limit_points_burst=2000,
        limit_storage_bytes=2048,
    )
    yield server
    server.stop()


def _client(server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _fields(response: httpx.Response) -> tuple[str, int, int]:
    """The RateLimit fields: the policy's name, r (remaining) and t (reset)."""
    m = re.fullmatch(r'"(\w+)";r=(\d+);t=(\d+)', response.headers["RateLimit"])
    assert m, response.headers["RateLimit"]
    return m.group(1), int(m.group(2)), int(m.group(3))


def test_requests_over_the_rate_get_429_with_the_fields_and_recover(
    request_limited, acme, globex
) -> None:
    with _client(request_limited, acme.keys["viewer"]) as a:
        seen = []
        for _ in range(6):
            r = a.get("/api/v1/whoami")
            ok(r)
            assert r.headers["RateLimit-Policy"] == '"requests";q=6;w=10'
            seen.append(_fields(r))
        assert [name for name, _, _ in seen] == ["requests"] * 6
        assert [remaining for _, remaining, _ in seen] == [5, 4, 3, 2, 1, 0]
        # t: the seconds until the bucket is full again, growing as it empties.
        resets = [reset for _, _, reset in seen]
        assert resets == sorted(resets) and resets[0] > 0 and resets[-1] <= 10

        refused = a.get("/api/v1/models")
        body = error(refused, 429, "LIMIT_EXCEEDED")
        assert body["details"]["limit"] == "requests" and body["details"]["quota"] == 6
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 2  # one request's worth of the rate
        assert refused.headers["RateLimit-Policy"] == '"requests";q=6;w=10'
        assert _fields(refused)[1] == 0

        # Another tenant's requests are its own: acme's use does not hold globex back.
        with _client(request_limited, globex.keys["viewer"]) as b:
            r = b.get("/api/v1/whoami")
            assert ok(r)["tenant_id"] == globex.tenant_id
            assert _fields(r)[1] == 5

        time.sleep(wait)
        again = a.get("/api/v1/whoami")
        assert ok(again)["tenant_id"] == acme.tenant_id


def test_mlflow_routes_answer_429_in_mlflows_format(request_limited, acme) -> None:
    with _client(request_limited, acme.keys["viewer"]) as a:
        search = "/api/2.0/mlflow/experiments/search"
        remaining = []
        for _ in range(6):
            r = a.get(search, params={"max_results": 5})
            assert r.status_code == 200, r.text
            remaining.append(_fields(r)[1])
        assert remaining == [5, 4, 3, 2, 1, 0]
        refused = a.get(search, params={"max_results": 5})
        assert refused.status_code == 429
        assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert acme.tenant_id in refused.json()["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        assert refused.headers["RateLimit-Policy"] == '"requests";q=6;w=10'


def _points(n: int, start: int = 0) -> dict:
    return {"keys": ["loss"] * n, "values": [0.5] * n, "steps": list(range(start, start + n))}


def test_points_over_the_rate_are_refused_before_anything_is_written(
    quota_limited, acme, globex
) -> None:
    run_id = new_run(acme.editor)
    with _client(quota_limited, acme.keys["editor"]) as a:
        url = f"/api/v1/runs/{run_id}/metrics:batch"
        ok(a.post(url, json=_points(1500)))
        # The bucket held 500: admitted, and the rest is debt (8.5 s of the rate: the
        # refusals below come well within it).
        ok(a.post(url, json=_points(9000, start=1500)))
        refused = a.post(url, json=_points(10, start=10500))
        body = error(refused, 429, "LIMIT_EXCEEDED")
        assert body["details"]["limit"] == "points"
        assert refused.headers["RateLimit-Policy"] == '"points";q=2000;w=2;qu="points"'
        assert int(refused.headers["Retry-After"]) >= 1
        # The rows route and MLflow's log-batch count the same points.
        rows = {"metrics": [{"key": "acc", "value": 0.1, "step": 0}]}
        error(a.post(f"/api/v1/runs/{run_id}/log-batch", json=rows), 429, "LIMIT_EXCEEDED")
        stock = a.post(
            "/api/2.0/mlflow/runs/log-batch",
            json={
                "run_id": run_id,
                "metrics": [{"key": "acc", "value": 0.1, "step": 0, "timestamp": 1}],
            },
        )
        assert stock.status_code == 429 and stock.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "Retry-After" in stock.headers
    history = ok(acme.viewer.get(f"/api/v1/runs/{run_id}/metrics/loss/history?max_points=10"))
    assert history["total"] == 10500  # the two admitted batches, nothing of the refused
    assert ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))["metrics"].keys() == {"loss"}

    # globex's points are its own.
    other = new_run(globex.editor)
    with _client(quota_limited, globex.keys["editor"]) as b:
        assert ok(b.post(f"/api/v1/runs/{other}/metrics:batch", json=_points(1500)))


def test_a_full_storage_refuses_an_upload_with_413_and_writes_nothing(quota_limited, acme) -> None:
    run_id = new_run(acme.editor)
    with _client(quota_limited, acme.keys["editor"]) as a:
        ok(a.put(f"/api/v1/runs/{run_id}/artifacts/first.bin", content=b"a" * 1500), 201)
        refused = a.put(f"/api/v1/runs/{run_id}/artifacts/second.bin", content=b"b" * 1000)
        body = error(refused, 413, "STORAGE_LIMIT_EXCEEDED")
        assert body["details"] == {"limit": 2048, "used": 1500, "requested": 1000}
        experiment = ok(a.get(f"/api/v1/runs/{run_id}"))["experiment_id"]
        folder = f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts"
        assert a.put(f"{folder}/small.bin", content=b"s" * 100).status_code == 200
        stock = a.put(f"{folder}/third.bin", content=b"c" * 1000)
        assert stock.status_code == 413, stock.text
        assert stock.json()["error_code"] == "RESOURCE_EXHAUSTED"
        upload = a.post(
            "/api/v1/models",
            data={"name": "too-big", "framework": "sklearn"},
            files={"file": ("m.pkl", b"z" * 1000)},
        )
        error(upload, 413, "STORAGE_LIMIT_EXCEEDED")
    names = [f["path"] for f in ok(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts"))]
    assert sorted(names) == ["first.bin", "small.bin"]
    error(acme.viewer.get("/api/v1/models/too-big"), 404)


def test_metrics_show_each_tenants_throttled_requests_and_usage(
    quota_limited, acme, globex
) -> None:
    run_id = new_run(acme.editor)
    with _client(quota_limited, acme.keys["editor"]) as a:
        url = f"/api/v1/runs/{run_id}/metrics:batch"
        ok(a.post(url, json=_points(10000)))  # 8 s of debt: the next two wait
        error(a.post(url, json=_points(10, start=10000)), 429)
        error(a.post(url, json=_points(10, start=10000)), 429)
    text = httpx.get(
        f"{quota_limited.url}/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}
    ).text
    mine = f'limit="points",tenant="{acme.tenant_id}"'
    assert f"matih_tenant_throttled_total{{{mine}}} 2.0" in text
    used = re.search(rf"matih_tenant_usage{{{re.escape(mine)}}} (\S+)", text)
    assert used and float(used.group(1)) >= 2000  # what is left of the debt
    assert f'matih_tenant_throttled_total{{limit="points",tenant="{globex.tenant_id}"' not in text
    # A tenant's key does not open /metrics.
    closed = httpx.get(
        f"{quota_limited.url}/metrics", headers={"Authorization": f"Bearer {acme.keys['admin']}"}
    )
    assert closed.status_code == 401
