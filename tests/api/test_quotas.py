"""The per-tenant limiter on its own, on a clock of the test's: windows, carried debt,
the fields' values, uploads at once, the replicas' shares, and the settings."""

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
        "points_per_s": 0,
        "concurrent_uploads": 0,
        "storage_bytes": 0,
        "window_s": 1.0,
        "storage_refresh_s": 60.0,
    }
    return Limits(**{**base, **changes})


def test_a_window_admits_its_quota_then_refuses_until_the_next() -> None:
    clock = Clock()
    limiter = TenantLimiter(limits(requests_per_s=2, window_s=2), clock=clock)
    decisions = [limiter.take_request("a") for _ in range(4)]
    assert [d.remaining for d in decisions] == [3, 2, 1, 0]
    assert decisions[0].policy_item() == '"requests";q=4;w=2'
    assert decisions[0].limit_item() == '"requests";r=3;t=2'
    clock.now += 0.5
    with pytest.raises(ThrottledError) as refused:
        limiter.take_request("a")
    assert refused.value.headers == {
        "RateLimit-Policy": '"requests";q=4;w=2',
        "RateLimit": '"requests";r=0;t=2',
        "Retry-After": "2",
    }
    assert limiter.take_request("b").remaining == 3  # another tenant's window
    clock.now += 1.5
    assert limiter.take_request("a").remaining == 3


def test_points_beyond_the_quota_are_carried_as_debt() -> None:
    clock = Clock()
    limiter = TenantLimiter(limits(points_per_s=1000), clock=clock)
    limiter.take_points("a", 5500)  # admitted: the window had quota left
    for wait in (5, 4, 3, 2, 1):
        with pytest.raises(ThrottledError) as refused:
            limiter.take_points("a", 1)
        assert refused.value.headers["Retry-After"] == str(wait)
        assert refused.value.details["limit"] == "points"
        clock.now += 1
    limiter.take_points("a", 1)
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
    monkeypatch.setenv("MATIH_LIMIT_REPLICAS", "2")
    got = Limits.of(Settings())
    assert (got.requests_per_s, got.points_per_s) == (150, 20000)
    assert got.concurrent_uploads == 2  # whole uploads, at least one a replica
    assert got.storage_bytes == 5000  # measured on the shared store: not shared out


def test_a_limit_of_zero_is_no_limit() -> None:
    limiter = TenantLimiter(limits(), measure=lambda t: 10**12, clock=Clock())
    for _ in range(1000):
        assert limiter.take_request("a") is None
    limiter.take_points("a", 10**9)
    with limiter.upload("a", 10**12):
        pass
