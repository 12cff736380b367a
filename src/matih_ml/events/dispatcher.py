"""The dispatcher: takes due deliveries from the outbox and sends them, at least once.

It runs as a thread inside ``matih-ml serve`` and as ``matih-ml dispatcher`` on its
own; any number may run. A delivery is claimed with a lease (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so two dispatchers never claim the same one), sent outside any
transaction, and then marked delivered, or retried with exponential backoff, or
dead-lettered after ``max_attempts``. A dispatcher that dies mid-send leaves a lease
that runs out, and the delivery is sent again: receivers deduplicate by event id.

Order: a delivery is only claimed when no earlier delivery of the same sink and
subject (``<tenant>:<model>``) is still pending, so one model's events arrive in
sequence order. A dead-lettered event stops blocking the ones after it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import aliased

from matih_ml.config import Settings
from matih_ml.events.kafka_sink import KafkaSink
from matih_ml.events.outbox import KAFKA_SINK, WEBHOOK_SINK_PREFIX
from matih_ml.events.reconciler import Reconciler
from matih_ml.events.signing import headers as signed_headers
from matih_ml.events.webhooks import WebhookStore
from matih_ml.store.db import Database
from matih_ml.store.lifecycle_store import now
from matih_ml.store.models import DeliveryRow, EventRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchPolicy:
    """How hard and how often the dispatcher tries."""

    max_attempts: int = 8
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    lease_s: float = 60.0
    batch: int = 50
    poll_s: float = 0.5
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchPolicy:
        """The policy the environment sets (``MATIH_EVENTS_*``)."""
        return cls(
            max_attempts=settings.events_max_attempts,
            backoff_s=settings.events_backoff_s,
            backoff_max_s=settings.events_backoff_max_s,
            poll_s=settings.events_poll_s,
            timeout_s=settings.webhook_timeout_s,
        )

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failures (with jitter)."""
        base = min(self.backoff_s * 2 ** max(attempts - 1, 0), self.backoff_max_s)
        return base * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class _Claim:
    id: int
    tenant_id: str
    event_id: str
    sink: str
    order_key: str
    attempts: int
    payload: str


@dataclass
class _Chore:
    every_s: float
    fn: Callable[[], object]
    last: float = 0.0


class Dispatcher:
    """Sends pending deliveries to webhooks and Kafka.

    Args:
        db: The service database (the outbox).
        webhooks: Where webhook URLs and secrets come from.
        kafka: The Kafka sink, if configured.
        policy: Retries and timing.
        reconciler: Run between rounds to settle intents older than its grace period.
        chores: Other periodic work run between rounds, each at most every
            ``every_s`` (the stage projection's retries): ``(every_s, function)``.
    """

    def __init__(
        self,
        db: Database,
        webhooks: WebhookStore,
        *,
        kafka: KafkaSink | None = None,
        policy: DispatchPolicy | None = None,
        reconciler: Reconciler | None = None,
        chores: Sequence[tuple[float, Callable[[], object]]] = (),
    ) -> None:
        self._db = db
        self._webhooks = webhooks
        self._kafka = kafka
        self.policy = policy or DispatchPolicy()
        self._reconciler = reconciler
        self._chores = [_Chore(every_s, fn) for every_s, fn in chores]
        self._http = httpx.Client(timeout=self.policy.timeout_s, follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="matih-send")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._users = 0
        self._users_lock = threading.Lock()

    # ---------------------------------------------------------------- rounds

    def run_once(self) -> int:
        """Claim due deliveries, send them, record the outcomes; return how many."""
        if self._reconciler is not None:
            try:
                self._reconciler.maybe_run()
            except Exception:  # settling intents must not stop deliveries
                log.exception("reconciling event intents failed; deliveries go on")
        for chore in self._chores:
            if time.monotonic() - chore.last >= chore.every_s:
                chore.last = time.monotonic()
                try:
                    chore.fn()
                except Exception:  # a chore must not stop deliveries
                    log.exception("a periodic chore failed; deliveries go on")
        claims = self._claim()
        # One batch never holds two deliveries of one subject to one sink (the claim
        # query sees to that), so they may go out side by side: a slow endpoint does
        # not hold up the others.
        if len(claims) > 1:
            list(self._pool.map(self._send, claims))
        elif claims:
            self._send(claims[0])
        return len(claims)

    def _claim(self) -> list[_Claim]:
        at = now()
        earlier = aliased(DeliveryRow)
        blocked = exists().where(
            earlier.sink == DeliveryRow.sink,
            earlier.order_key == DeliveryRow.order_key,
            earlier.state == "pending",
            earlier.sequence < DeliveryRow.sequence,
        )
        q = (
            select(DeliveryRow, EventRow.payload)
            .join(EventRow, EventRow.id == DeliveryRow.event_id)
            .where(
                DeliveryRow.state == "pending",
                DeliveryRow.next_attempt_at <= at,
                or_(DeliveryRow.lease_until.is_(None), DeliveryRow.lease_until < at),
                ~blocked,
            )
            .order_by(DeliveryRow.sequence, DeliveryRow.id)
            .limit(self.policy.batch)
        )
        # Every tenant's deliveries: the dispatcher works across tenants on purpose.
        with self._db.unscoped() as s:
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(of=DeliveryRow, skip_locked=True)
            else:
                # SQLite: a write first takes the database lock for the transaction, so a
                # second dispatcher waits instead of claiming the same rows.
                s.execute(update(DeliveryRow).where(DeliveryRow.id == -1).values(attempts=0))
            rows = s.execute(q).all()
            lease = at + timedelta(seconds=self.policy.lease_s)
            claims = []
            for row, payload in rows:
                row.lease_until = lease
                claims.append(
                    _Claim(
                        row.id,
                        row.tenant_id,
                        row.event_id,
                        row.sink,
                        row.order_key,
                        row.attempts,
                        payload,
                    )
                )
            return claims

    def _send(self, claim: _Claim) -> None:
        status: int | None = None
        try:
            if claim.sink == KAFKA_SINK:
                if self._kafka is None:
                    raise RuntimeError("Kafka is not configured on this dispatcher")
                self._kafka.send(claim.order_key, claim.payload.encode(), claim.event_id)
            elif claim.sink.startswith(WEBHOOK_SINK_PREFIX):
                target = self._webhooks.target(
                    claim.tenant_id, claim.sink.removeprefix(WEBHOOK_SINK_PREFIX)
                )
                if target is None:
                    self._finish(claim, state="cancelled", error="the webhook was deleted")
                    return
                url, secret = target
                body = claim.payload.encode()
                r = self._http.post(
                    url, content=body, headers=signed_headers(secret, claim.event_id, body)
                )
                status = r.status_code
                if not 200 <= status < 300:
                    raise RuntimeError(f"HTTP {status}: {r.text[:200]}")
            else:
                raise RuntimeError(f"unknown sink {claim.sink!r}")
        except Exception as exc:  # noqa: BLE001 - every failure is a retry, recorded
            self._fail(claim, f"{type(exc).__name__}: {exc}"[:1000], status)
            return
        self._finish(claim, state="delivered", status=status)

    def _finish(
        self, claim: _Claim, *, state: str, status: int | None = None, error: str = ""
    ) -> None:
        with self._db.unscoped() as s:  # by the claimed row's id
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == claim.id)
                .values(
                    state=state,
                    attempts=claim.attempts + 1,
                    last_status=status,
                    last_error=error,
                    lease_until=None,
                    delivered_at=now() if state == "delivered" else None,
                )
            )

    def _fail(self, claim: _Claim, error: str, status: int | None) -> None:
        attempts = claim.attempts + 1
        dead = attempts >= self.policy.max_attempts
        log.warning(
            "delivery of %s to %s failed (attempt %d%s): %s",
            claim.event_id,
            claim.sink,
            attempts,
            ", dead-lettered" if dead else "",
            error,
        )
        with self._db.unscoped() as s:  # by the claimed row's id
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == claim.id)
                .values(
                    state="dead" if dead else "pending",
                    attempts=attempts,
                    last_status=status,
                    last_error=error,
                    lease_until=None,
                    next_attempt_at=now() + timedelta(seconds=self.policy.backoff(attempts)),
                )
            )

    # ------------------------------------------------------------ the loop

    def run_forever(self) -> None:
        """Dispatch until :meth:`stop`; a failing round is logged and retried."""
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("dispatch round failed; retrying")
                busy = 0
            if not busy:
                self._stop.wait(self.policy.poll_s)

    def start(self) -> None:
        """Run :meth:`run_forever` in a daemon thread (once, however many apps share it)."""
        with self._users_lock:
            self._users += 1
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.run_forever, name="matih-dispatcher", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Release one :meth:`start`; the last one ends the loop and waits for its round."""
        with self._users_lock:
            self._users = max(self._users - 1, 0)
            if self._users or self._thread is None:
                return
            self._stop.set()
            thread, self._thread = self._thread, None
        thread.join(timeout)


def replay(
    db: Database,
    *,
    since: datetime,
    tenant_id: str | None = None,
    sink: str | None = None,
    states: tuple[str, ...] = ("dead",),
) -> int:
    """Send again the deliveries of events since ``since`` that are in ``states``.

    Args:
        db: The service database.
        since: Events created at or after this time.
        tenant_id: Only this tenant's deliveries (default: every tenant's: an
            operator's command, so it works across tenants unless told otherwise).
        sink: Only this sink's.
        states: The delivery states to send again.

    Returns:
        How many deliveries were put back in the queue.
    """
    with db.unscoped() as s:
        q = (
            update(DeliveryRow)
            .where(
                DeliveryRow.state.in_(states),
                DeliveryRow.event_id.in_(select(EventRow.id).where(EventRow.created_at >= since)),
            )
            .values(state="pending", attempts=0, next_attempt_at=now(), lease_until=None)
        )
        if tenant_id:
            q = q.where(DeliveryRow.tenant_id == tenant_id)
        if sink:
            q = q.where(DeliveryRow.sink == sink)
        return s.execute(q.execution_options(synchronize_session=False)).rowcount
