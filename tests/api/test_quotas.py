"""The per-tenant limiter on its own, on a clock of the test's: token buckets and their
debt, the fields' values, uploads at once, the replicas' shares, and the settings."""

from __future__ import annotations

import pytest

from matih_ml.api.quotas import Limits, StorageLimitError, TenantLimiter, ThrottledError
from matih_ml.config import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(**changes) -> Limits:
    base = {
        "requests_per_s": 0,
        "requests_burst": 0,
        "points_per_s": 0,
        "points_burst": 0,
        "concurrent_uploads": 0,
        "storage_bytes": 0,
        "storage_refresh_s": 60.0,
    }
    return Limits(**{**base, **changes})


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = TenantLimiter(limits(requests_per_s=2, requests_burst=4), clock=clock)
    decisions = [limiter.take_request("a") for _ in range(4)]
    assert [d.remaining for d in decisions] == [3, 2, 1, 0]
    assert decisions[0].policy_item() == '"requests";q=4;w=2'
    # r what the bucket holds, t the seconds until it is full again.
    assert [d.limit_item() for d in (decisions[0], decisions[3])] == [
        '"requests";r=3;t=1',
        '"requests";r=0;t=2',
    ]
    clock.now += 0.25
    with pytest.raises(ThrottledError) as refused:
        limiter.take_request("a")
    assert refused.value.headers == {
        "RateLimit-Policy": '"requests";q=4;w=2',
        "RateLimit": '"requests";r=0;t=2',
        "Retry-After": "1",  # half a token is there; the other half takes 0.25 s
    }
    assert refused.value.details["limit"] == "requests"
    assert limiter.take_request("b").remaining == 3  # another tenant's bucket
    clock.now += 0.25
    assert limiter.take_request("a").remaining == 0  # one token back: one request
    with pytest.raises(ThrottledError):
        limiter.take_request("a")
    clock.now += 2
    assert limiter.take_request("a").remaining == 3  # full again, no more than full


def test_a_batch_larger_than_the_bucket_passes_then_is_paid_for() -> None:
    clock = Clock()
    limiter = TenantLimiter(limits(points_per_s=1000, points_burst=2000), clock=clock)
    limiter.take_points("a", 1500)
    limiter.take_points("a", 5000)  # 500 left: admitted, 4,500 in debt
    waits = []
    for _ in range(5):
        with pytest.raises(ThrottledError) as refused:
            limiter.take_points("a", 1)
        waits.append(refused.value.headers["Retry-After"])
        assert refused.value.headers["RateLimit-Policy"] == '"points";q=2000;w=2;qu="points"'
        clock.now += 1
    assert waits == ["5", "4", "3", "2", "1"]
    limiter.take_points("a", 1)  # paid for: 4.5 s of the rate, then a point's worth
    assert limiter.snapshot()["a"]["throttled_points"] == 5


def test_uploads_at_once_and_storage() -> None:
    stored = {"a": 900, "b": 0}
    limiter = TenantLimiter(
        limits(concurrent_uploads=1, storage_bytes=1000), measure=stored.get, clock=Clock()
    )
    with limiter.upload("a", 50):
        with pytest.raises(ThrottledError) as refused, limiter.upload("a", 1):
            pass
        assert refused.value.headers["RateLimit-Policy"] == (
            '"uploads";q=1;w=1;qu="concurrent-requests"'
        )
        with limiter.upload("b", 10):  # another tenant's slot
            pass
    assert limiter.stored_bytes("a") == 950  # the last measure plus what was accepted
    with pytest.raises(StorageLimitError) as full, limiter.upload("a", 51):
        pass
    assert full.value.details == {"limit": 1000, "used": 950, "requested": 51}
    with limiter.upload("a", 50):  # the slot was given back
        pass
    snap = limiter.snapshot()["a"]
    assert snap["uploads"] == 0 and snap["throttled_uploads"] == 1
    assert snap["throttled_storage"] == 1 and snap["storage_bytes"] == 1000


def test_an_upload_that_fails_frees_its_slot_and_adds_no_bytes() -> None:
    limiter = TenantLimiter(
        limits(concurrent_uploads=1, storage_bytes=100), measure=lambda t: 0, clock=Clock()
    )
    with pytest.raises(RuntimeError), limiter.upload("a", 60):
        raise RuntimeError("the store failed")
    with limiter.upload("a", 60):
        pass
    assert limiter.stored_bytes("a") == 60


def test_limits_come_from_the_environment_shared_out_over_the_replicas(monkeypatch) -> None:
    monkeypatch.setenv("MATIH_LIMIT_REQUESTS_PER_S", "300")
    monkeypatch.setenv("MATIH_LIMIT_POINTS_PER_S", "40000")
    monkeypatch.setenv("MATIH_LIMIT_CONCURRENT_UPLOADS", "3")
    monkeypatch.setenv("MATIH_LIMIT_STORAGE_BYTES", "5000")
    monkeypatch.setenv("MATIH_LIMIT_BURST_S", "2")
    monkeypatch.setenv("MATIH_LIMIT_POINTS_BURST", "100000")
    monkeypatch.setenv("MATIH_LIMIT_REPLICAS", "2")
    got = Limits.of(Settings())
    assert (got.requests_per_s, got.points_per_s) == (150, 20000)
    assert (got.requests_burst, got.points_burst) == (300, 50000)
    assert got.concurrent_uploads == 2  # whole uploads, at least one a replica
    assert got.storage_bytes == 5000  # measured on the shared store: not shared out


def test_a_limit_of_zero_is_no_limit() -> None:
    limiter = TenantLimiter(limits(), measure=lambda t: 10**12, clock=Clock())
    for _ in range(1000):
        assert limiter.take_request("a") is None
    limiter.take_points("a", 10**9)
    with limiter.upload("a", 10**12):
        pass
