"""Per-tenant limits: requests and metric points per second, uploads at once, storage.

Every door that takes an action asks the one :class:`TenantLimiter` of its process (our
REST routes, MLflow's protocol, the web pages; the SDK and CLI come in over REST). A
refusal is a 429 with ``Retry-After`` and the IETF ``RateLimit-Policy``/``RateLimit``
fields (draft-ietf-httpapi-ratelimit-headers), or a 413 when the tenant's storage is
full; every answer to an authenticated request carries the fields of its request quota.

The rates are token buckets kept per replica: each replica enforces the tenant's rate
and burst over ``MATIH_LIMIT_REPLICAS`` (docs/decisions.md, "Per-tenant limits"). A
request is admitted while the bucket holds at least one unit, and may take it below
zero: a 200,000-point batch passes, and the tenant then waits until the rate has paid
for it, so the long-run rate never exceeds the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from matih_ml.config import Settings
from matih_ml.errors import LimitExceededError, PayloadTooLargeError

# Where a request's quota state waits for the response (scope["state"], see
# RateLimitHeadersMiddleware).
STATE_KEY = "matih.ratelimit"


class ThrottledError(LimitExceededError):
    """A tenant is over one of its rates, or has its uploads in flight: retry later.

    Attributes:
        headers: ``Retry-After`` and the RateLimit fields, for the 429.
    """

    def __init__(self, message: str, *, details: dict, headers: dict[str, str]) -> None:
        super().__init__(message, details=details)
        self.headers = headers


class StorageLimitError(PayloadTooLargeError):
    """The tenant's stored bytes plus this upload would be over its storage limit."""

    code = "STORAGE_LIMIT_EXCEEDED"


@dataclass
class Decision:
    """One policy's answer: admitted or not, and what its RateLimit fields say."""

    policy: str
    allowed: bool
    quota: int
    window_s: float
    remaining: int
    reset_s: float
    retry_after_s: float = 0.0
    unit: str | None = None

    def policy_item(self) -> str:
        """This policy as a member of ``RateLimit-Policy``: ``"name";q=Q;w=W``."""
        unit = f';qu="{self.unit}"' if self.unit else ""
        return f'"{self.policy}";q={self.quota};w={_seconds(self.window_s)}{unit}'

    def limit_item(self) -> str:
        """Its current state as a member of ``RateLimit``: ``"name";r=R;t=T``."""
        return f'"{self.policy}";r={self.remaining};t={_seconds(self.reset_s)}'

    def headers(self) -> dict[str, str]:
        """The fields a response carries for this policy (``Retry-After`` when refused)."""
        found = {"RateLimit-Policy": self.policy_item(), "RateLimit": self.limit_item()}
        if not self.allowed:
            found["Retry-After"] = str(_seconds(self.retry_after_s))
        return found


def _seconds(value: float) -> int:
    # The fields take whole seconds; a wait rounds up, so a client that honours it
    # finds the quota there.
    return max(0, math.ceil(value - 1e-9))


class Bucket:
    """A token bucket: ``capacity`` units, refilled at ``rate`` a second, with debt.

    Not thread-safe by itself: the limiter holds its lock around every call.
    """

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(capacity, 1.0)
        self.tokens = self.capacity
        self.at = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, amount: float, now: float) -> tuple[bool, float]:
        """Take ``amount`` if the bucket holds at least one unit (the rest may be debt);
        else the wait before it does."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= amount
            return True, 0.0
        return False, (1 - self.tokens) / self.rate

    def usage(self, now: float) -> float:
        """What is taken from the bucket now (debt included): its capacity when empty."""
        self._refill(now)
        return self.capacity - self.tokens

    def decision(self, policy: str, allowed: bool, wait: float, now: float) -> Decision:
        """The RateLimit view of this bucket after a take: ``q`` its size, ``w`` the
        seconds it takes to fill, ``r`` what it holds, ``t`` the seconds until it is full."""
        return Decision(
            policy=policy,
            allowed=allowed,
            quota=math.floor(self.capacity),
            window_s=self.capacity / self.rate,
            remaining=max(0, math.floor(self.tokens)),
            reset_s=(self.capacity - self.tokens) / self.rate,
            retry_after_s=wait,
        )


@dataclass
class _Tenant:
    requests: Bucket
    points: Bucket
    uploads: int = 0
    throttled: dict[str, int] = field(default_factory=dict)
    stored_bytes: int | None = None
    stored_at: float = -math.inf
    accepted_since: int = 0


@dataclass(frozen=True)
class Limits:
    """This replica's share of every tenant's limits (0: no limit).

    Attributes:
        requests_per_s: Requests a second.
        requests_burst: Requests at once before the rate holds the tenant.
        points_per_s: Metric points a second.
        points_burst: Points at once before the rate holds the tenant.
        concurrent_uploads: Uploads in flight at once.
        storage_bytes: Bytes stored under the tenant's artifact prefix (not shared out:
            every replica measures the same store).
        storage_refresh_s: How often the stored bytes are measured again.
    """

    requests_per_s: float
    requests_burst: float
    points_per_s: float
    points_burst: float
    concurrent_uploads: int
    storage_bytes: int
    storage_refresh_s: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits of ``settings``, shared out over ``MATIH_LIMIT_REPLICAS``."""
        n = settings.limit_replicas
        uploads = settings.limit_concurrent_uploads
        requests = settings.limit_requests_per_s
        points = settings.limit_points_per_s
        return cls(
            requests_per_s=requests / n,
            requests_burst=requests * settings.limit_burst_s / n,
            points_per_s=points / n,
            # At least a second's worth, whatever the burst setting says.
            points_burst=max(settings.limit_points_burst, points) / n,
            # Whole uploads: each replica lets at least one through.
            concurrent_uploads=math.ceil(uploads / n) if uploads else 0,
            storage_bytes=settings.limit_storage_bytes,
            storage_refresh_s=settings.limit_storage_refresh_s,
        )


class TenantLimiter:
    """The per-tenant limits of one process.

    Args:
        limits: This replica's share of the limits.
        measure: The bytes stored under a tenant's artifact prefix (called at most once
            per ``storage_refresh_s`` a tenant, off the event loop).
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        limits: Limits,
        measure: Callable[[str], int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._measure = measure
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, _Tenant] = {}
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def _tenant(self, tenant: str, now: float) -> _Tenant:
        found = self._tenants.get(tenant)
        if found is None:
            limits = self.limits
            found = self._tenants[tenant] = _Tenant(
                requests=Bucket(limits.requests_per_s, limits.requests_burst, now),
                points=Bucket(limits.points_per_s, limits.points_burst, now),
            )
        return found

    def _count(self, state: _Tenant, policy: str) -> None:
        state.throttled[policy] = state.throttled.get(policy, 0) + 1

    def take_request(self, tenant: str) -> Decision | None:
        """Count one request of ``tenant``: its decision (None when requests are unlimited).

        Raises:
            ThrottledError: The tenant is over its request rate.
        """
        if not self.limits.requests_per_s:
            return None
        now = self._clock()
        with self._lock:
            state = self._tenant(tenant, now)
            allowed, wait = state.requests.take(1, now)
            decision = state.requests.decision("requests", allowed, wait, now)
            if not allowed:
                self._count(state, "requests")
        if not allowed:
            raise _throttled(
                tenant, decision, _rate_text(state.requests, "requests"), "REQUESTS_PER_S"
            )
        return decision

    def take_points(self, tenant: str, points: int) -> None:
        """Count ``points`` metric points of ``tenant`` before they are written.

        Raises:
            ThrottledError: The tenant is over its points rate (nothing is written).
        """
        if not self.limits.points_per_s or points <= 0:
            return
        now = self._clock()
        with self._lock:
            state = self._tenant(tenant, now)
            allowed, wait = state.points.take(points, now)
            if allowed:
                return
            decision = state.points.decision("points", False, wait, now)
            decision.unit = "points"
            self._count(state, "points")
        raise _throttled(
            tenant, decision, _rate_text(state.points, "metric points"), "POINTS_PER_S"
        )

    @contextmanager
    def upload(self, tenant: str, size: int) -> Iterator[None]:
        """Hold one of ``tenant``'s upload slots while ``size`` bytes are stored.

        Call it off the event loop: it may measure the tenant's storage.

        Raises:
            ThrottledError: The tenant has its limit of uploads in flight.
            StorageLimitError: The upload would put the tenant over its storage limit.
        """
        self.check_storage(tenant, size)
        limit = self.limits.concurrent_uploads
        now = self._clock()
        with self._lock:
            state = self._tenant(tenant, now)
            if limit and state.uploads >= limit:
                self._count(state, "uploads")
                decision = Decision(
                    policy="uploads",
                    allowed=False,
                    quota=limit,
                    window_s=1.0,
                    remaining=0,
                    reset_s=1.0,
                    retry_after_s=1.0,
                    unit="concurrent-requests",
                )
                raise _throttled(tenant, decision, f"{limit} uploads at once", "CONCURRENT_UPLOADS")
            state.uploads += 1
        try:
            yield
            with self._lock:
                state.accepted_since += size
        finally:
            with self._lock:
                state.uploads -= 1

    def check_storage(self, tenant: str, size: int) -> None:
        """Refuse ``size`` more bytes if they would put ``tenant`` over its storage limit.

        Raises:
            StorageLimitError: They would (413; nothing is written).
        """
        limit = self.limits.storage_bytes
        if not limit or self._measure is None:
            return
        used = self.stored_bytes(tenant)
        if used is not None and used + size > limit:
            with self._lock:
                self._count(self._tenant(tenant, self._clock()), "storage")
            raise StorageLimitError(
                f"Tenant {tenant!r} stores {used} bytes of its {limit}; {size} more would "
                "be over its storage limit (MATIH_LIMIT_STORAGE_BYTES). Delete versions or "
                "runs' artifacts, or ask the operator for more.",
                details={"limit": limit, "used": used, "requested": size},
            )

    def stored_bytes(self, tenant: str) -> int | None:
        """The tenant's stored bytes: the last measure plus what this replica took since."""
        if self._measure is None:
            return None
        now = self._clock()
        with self._lock:
            state = self._tenant(tenant, now)
            fresh = now - state.stored_at < self.limits.storage_refresh_s
        if not fresh:
            measured = self._measure(tenant)  # outside the lock: it lists the store
            with self._lock:
                state.stored_bytes, state.stored_at = measured, self._clock()
                state.accepted_since = 0
        with self._lock:
            if state.stored_bytes is None:
                return None
            return state.stored_bytes + state.accepted_since

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Every tenant's current usage and throttled counts (for /metrics and tests)."""
        now = self._clock()
        with self._lock:
            return {
                tenant: {
                    "requests": s.requests.usage(now),
                    "points": s.points.usage(now),
                    "uploads": s.uploads,
                    "storage_bytes": (
                        -1 if s.stored_bytes is None else s.stored_bytes + s.accepted_since
                    ),
                    **{f"throttled_{k}": v for k, v in s.throttled.items()},
                }
                for tenant, s in self._tenants.items()
            }

    def exposition(self) -> bytes:
        """The limiter's figures in Prometheus' text format."""
        return generate_latest(self.registry)


def _rate_text(bucket: Bucket, unit: str) -> str:
    return f"{bucket.rate:g} {unit} a second (at most {math.floor(bucket.capacity)} at once)"


def _throttled(tenant: str, decision: Decision, limit: str, setting: str) -> ThrottledError:
    wait = _seconds(decision.retry_after_s)
    return ThrottledError(
        f"Tenant {tenant!r} is over its limit of {limit} on this replica "
        f"(MATIH_LIMIT_{setting}); retry in {wait} s.",
        details={
            "limit": decision.policy,
            "quota": decision.quota,
            "window_s": decision.window_s,
            "retry_after_s": wait,
        },
        headers=decision.headers(),
    )


class _Collector(Collector):
    """The limiter's state, read at scrape time."""

    def __init__(self, limiter: TenantLimiter) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        throttled = CounterMetricFamily(
            "matih_tenant_throttled",
            "Requests refused by a per-tenant limit (requests, points, uploads, storage).",
            labels=("tenant", "limit"),
        )
        usage = GaugeMetricFamily(
            "matih_tenant_usage",
            "A tenant's current use of a limit on this replica: requests and points taken "
            "from its bucket (its size when empty, more in debt), uploads in flight, stored "
            "bytes (-1 before the first measure).",
            labels=("tenant", "limit"),
        )
        for tenant, figures in sorted(self._limiter.snapshot().items()):
            for name, value in figures.items():
                if name.startswith("throttled_"):
                    throttled.add_metric((tenant, name.removeprefix("throttled_")), value)
                else:
                    usage.add_metric((tenant, name), value)
        yield throttled
        yield usage


def limiter_of(app: object) -> TenantLimiter | None:
    """The app's limiter (None for an app built without one)."""
    state = getattr(app, "state", None)
    return getattr(state, "limiter", None)


def remember(state: dict, decision: Decision | None) -> None:
    """Keep a request's quota decision for its answer's RateLimit fields."""
    if decision is not None:
        state[STATE_KEY] = decision


def charge_request(app: object, scope: dict, tenant: str) -> None:
    """Count one authenticated request of ``tenant`` against the app's limiter, keeping
    the decision for the answer's RateLimit fields.

    Raises:
        ThrottledError: The tenant is over its request rate.
    """
    limiter = limiter_of(app)
    if limiter is not None:
        remember(scope.setdefault("state", {}), limiter.take_request(tenant))


def take_points(app: object, tenant: str, points: int) -> None:
    """Count ``points`` metric points of ``tenant`` against the app's limiter.

    Raises:
        ThrottledError: The tenant is over its points rate.
    """
    limiter = limiter_of(app)
    if limiter is not None:
        limiter.take_points(tenant, points)


@contextmanager
def upload_slot(app: object, tenant: str, size: int) -> Iterator[None]:
    """One of ``tenant``'s upload slots and room for ``size`` bytes (off the event loop).

    Raises:
        ThrottledError: The tenant has its uploads in flight.
        StorageLimitError: Its storage would be over the limit.
    """
    limiter = limiter_of(app)
    if limiter is None:
        yield
        return
    with limiter.upload(tenant, size):
        yield
