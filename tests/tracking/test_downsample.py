"""Downsampled histories: the database's buckets agree with the points, on SQLite and
PostgreSQL, and with the in-Python fallback used for a remote MLflow server."""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left, bisect_right

import pytest

from api.helpers import error, new_run, ok
from conftest import embedded_settings
from matih_ml.mlflow_adapter.bulk import BulkMetricWriter
from matih_ml.mlflow_adapter.downsample import _in_python, downsample
from matih_ml.tenancy import tenant_scope


def _points(n: int, first_step: int = 0) -> list[tuple[str, float, int, int]]:
    return [("loss", math.sin(i / 50) + i / n, 1_000 + i, first_step + i * 3) for i in range(n)]


def _expected(points, n_buckets: int) -> list[tuple[int, int, int, float, float, float]]:
    lo, hi = points[0][3], points[-1][3]
    span = hi - lo + 1
    groups: dict[int, list] = {}
    for _, v, _, s in points:
        groups.setdefault(int((s - lo) / span * n_buckets), []).append((s, v))
    return [
        (
            g[0][0],
            g[-1][0],
            len(g),
            min(v for _, v in g),
            max(v for _, v in g),
            sum(v for _, v in g) / len(g),
        )
        for _, g in sorted(groups.items())
    ]


def _check(result, points, n_buckets: int) -> None:
    """Buckets in step order that partition the points, each with its points' exact figures.

    Narrow buckets are the equal step ranges of ``_expected``; buckets built from the
    write-time summary are runs of whole blocks, so only their figures are checked.
    """
    got = [(b.step_min, b.step_max, b.count, b.min, b.max, b.mean) for b in result.buckets]
    assert 0 < len(got) <= n_buckets
    steps = sorted(s for *_, s in points)
    width = (steps[-1] - steps[0] + 1) / n_buckets
    if width < 64:
        want = _expected(points, n_buckets)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g[:5] == w[:5] and math.isclose(g[5], w[5], rel_tol=1e-9)
    for before, after in itertools.pairwise(got):
        assert before[1] < after[0]
    ordered = sorted((s, v) for _, v, _, s in points)
    keys = [s for s, _ in ordered]
    for step_min, step_max, count, lo, hi, mean in got:
        inside = ordered[bisect_left(keys, step_min) : bisect_right(keys, step_max)]
        values = [v for _, v in inside]
        assert count == len(values) and (lo, hi) == (min(values), max(values))
        assert math.isclose(mean, sum(values) / len(values), rel_tol=1e-9)
        assert (inside[0][0], inside[-1][0]) == (step_min, step_max)
    assert sum(g[2] for g in got) == result.total == len(points)
    assert result.first == (points[0][3], points[0][1], points[0][2])
    assert result.last == (points[-1][3], points[-1][1], points[-1][2])


def test_sql_buckets_match_the_points_and_the_python_fallback(tracker, tenant) -> None:
    from matih_ml.tracking import RunConfig

    points = _points(30_000)
    with tracker.start_run("ds", RunConfig(tenant_id=tenant)) as run:
        pass
    client = tracker.backend.client
    with tenant_scope(tenant):
        BulkMetricWriter(client).write(run.run_id, points)
        for n in (1, 7, 1000, 5000):
            result = downsample(client, run.run_id, "loss", n)
            _check(result, points, n)
        fallback = _in_python("loss", [(s, v, t) for _, v, t, s in points], 5000)
        assert [b.count for b in fallback.buckets] == [b.count for b in result.buckets]
        assert downsample(client, run.run_id, "nothing", 10).total == 0


def test_huge_steps_do_not_overflow(tracker, tenant) -> None:
    from matih_ml.tracking import RunConfig

    points = [("s", float(i), 1, 2**63 - 1 - (9 - i) * 2**58) for i in range(10)]
    with tracker.start_run("ds", RunConfig(tenant_id=tenant)) as run:
        pass
    with tenant_scope(tenant):
        BulkMetricWriter(tracker.backend.client).write(run.run_id, points)
        result = downsample(tracker.backend.client, run.run_id, "s", 5)
    assert sum(b.count for b in result.buckets) == 10
    assert [b.step_min for b in result.buckets] == sorted(b.step_min for b in result.buckets)


def test_postgresql_buckets_match_the_points(tmp_path, postgres_database) -> None:
    from matih_ml.services import build_services

    settings = embedded_settings(tmp_path).model_copy(
        update={"tracking_uri_env": postgres_database, "auto_migrate_env": True}
    )
    services = build_services(settings)
    try:
        run = services.runs.create_run("acme", "ds")
        points = _points(5_000, first_step=17)
        with tenant_scope("acme"):
            BulkMetricWriter(services.backend.client).write(run.info.run_id, points)
            _check(downsample(services.backend.client, run.info.run_id, "loss", 100), points, 100)
    finally:
        services.db.dispose()


def test_the_api_downsamples_with_max_points(acme, globex) -> None:
    run_id = new_run(acme.editor)
    n = 10_000
    body = {"keys": ["loss"] * n, "values": [float(i) for i in range(n)], "steps": list(range(n))}
    ok(acme.editor.post(f"/api/v1/runs/{run_id}/metrics:batch", json=body))
    url = f"/api/v1/runs/{run_id}/metrics/loss/history"
    d = ok(acme.viewer.get(url, params={"max_points": 100}))
    assert d["total"] == n and 50 <= len(d["buckets"]) <= 100
    # Buckets of 100 steps are built from 64-step blocks of the write-time summary.
    assert d["buckets"][0] == {
        "step_min": 0,
        "step_max": 127,
        "count": 128,
        "min": 0.0,
        "max": 127.0,
        "mean": 63.5,
    }
    assert sum(b["count"] for b in d["buckets"]) == n
    assert d["first"]["step"] == 0 and d["last"]["step"] == n - 1
    error(acme.viewer.get(url, params={"max_points": 0}), 422)
    error(acme.viewer.get(url, params={"max_points": 10_001}), 422)
    error(globex.viewer.get(url, params={"max_points": 10}), 404)
    # Without max_points: the paged raw history, as before.
    assert len(ok(acme.viewer.get(url))["items"]) == 1000


@pytest.mark.parametrize("n", [1, 3])
def test_fallback_handles_tiny_histories(n) -> None:
    pts = [(i, float(i), i) for i in range(n)]
    result = _in_python("k", list(pts), 10)
    assert sum(b.count for b in result.buckets) == n
