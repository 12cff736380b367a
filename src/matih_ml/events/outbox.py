"""The transactional outbox: events are rows in the service's database.

Two ways in:

- :meth:`EventLog.emit` writes a ready event in the caller's transaction, beside the
  state change it describes (a stage move, an approval). Both commit, or neither.
- For changes that MLflow makes (a run, a version), :meth:`EventLog.intent` records
  the event first, in a transaction of its own, and :meth:`EventLog.confirm` makes it
  ready once MLflow has done it (or :meth:`EventLog.drop` once it has failed). A
  crash in between leaves an intent, which :mod:`matih_ml.events.reconciler` later
  confirms or drops by looking at MLflow: nothing is lost, nothing invented.

Becoming ready gives an event its tenant's next sequence number and one delivery per
sink that wants it; the dispatcher takes it from there.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from matih_ml.errors import MatihError, UnavailableError
from matih_ml.events.catalog import SCHEMA_VERSION, EventType, check_data
from matih_ml.store.db import Database
from matih_ml.store.lifecycle_store import aware, now
from matih_ml.store.models import DeliveryRow, EventRow, EventSequenceRow, WebhookRow
from matih_ml.store.tenant_filter import bind_tenant

log = logging.getLogger(__name__)

KAFKA_SINK = "kafka"
# The tag that ties an MLflow object (run, version) to the intent that announced it.
TAG_EVENT_INTENT = "matih.event_intent"
WEBHOOK_SINK_PREFIX = "webhook:"


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class Pending:
    """An intent being carried out (see :meth:`EventLog.pending`)."""

    id: str
    subject: str
    data: dict[str, Any]
    cancelled: bool = False

    def cancel(self) -> None:
        """Nothing changed after all: drop the intent instead of confirming it."""
        self.cancelled = True


class EventLog:
    """Writes events into the outbox and reads the feed.

    Args:
        db: The service database.
        kafka: Whether Kafka is a sink (``MATIH_KAFKA_BOOTSTRAP_SERVERS`` is set).
    """

    def __init__(self, db: Database, *, kafka: bool = False) -> None:
        self._db = db
        self._kafka = kafka
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(tenant_id)`` in this process after each commit that made a
        tenant's events ready (serving drops its cached resolutions: a client that
        promotes and then predicts through the same replica sees the new version)."""
        self._listeners.append(listener)

    def _notify_after_commit(self, s: Session, tenant_id: str) -> None:
        if not self._listeners:
            return

        def notify(_: Session) -> None:
            for listener in self._listeners:
                try:
                    listener(tenant_id)
                except Exception:  # a listener must not fail the commit
                    log.warning("event listener failed", exc_info=True)

        sa_event.listen(s, "after_commit", notify, once=True)

    # ------------------------------------------------------------------ writes

    def emit(
        self,
        session: Session,
        tenant_id: str,
        event_type: EventType,
        subject: str,
        data: dict[str, Any],
    ) -> str:
        """Write a ready event in ``session``'s transaction; return its id."""
        bind_tenant(session, tenant_id)
        row = EventRow(
            id=f"evt_{uuid.uuid4().hex}",
            tenant_id=tenant_id,
            type=event_type.value,
            subject=subject,
            state="intent",
            created_at=now(),
            data=check_data(event_type, data),
        )
        session.add(row)
        self._make_ready(session, row)
        return row.id

    def intent(
        self, tenant_id: str, event_type: EventType, subject: str, data: dict[str, Any]
    ) -> str:
        """Record an event whose change MLflow is about to make; return its id.

        ``data`` may be partial (the version number is not known yet): it is checked
        in full by :meth:`confirm`.
        """
        event_id = f"evt_{uuid.uuid4().hex}"
        with self._db.uow(tenant=tenant_id) as s:
            s.add(
                EventRow(
                    id=event_id,
                    tenant_id=tenant_id,
                    type=event_type.value,
                    subject=subject,
                    state="intent",
                    created_at=now(),
                    data=data,
                )
            )
        return event_id

    @contextmanager
    def pending(
        self, tenant_id: str, event_type: EventType, subject: str, data: dict[str, Any]
    ) -> Iterator[Pending]:
        """Record an intent, run the block that makes the change, then confirm it.

        The block fills in ``pending.data`` (and ``pending.subject``) as it learns
        them, and calls ``pending.cancel()`` if it turned out to change nothing. A
        refusal (our own error, bad input or a conflict) drops the intent: nothing was
        changed. Any other exception, a lost connection or an unknown failure, may have
        come after MLflow's commit, so the intent is left to the reconciler, which looks
        at MLflow and confirms or drops it; so is a crash.
        """
        p = Pending(self.intent(tenant_id, event_type, subject, data), subject, dict(data))
        try:
            yield p
        except BaseException as exc:
            if isinstance(exc, MatihError) and not isinstance(exc, UnavailableError):
                self._drop_quietly(p.id, tenant_id)
            raise
        if p.cancelled:
            self.drop(p.id, tenant_id=tenant_id)
        else:
            self.confirm(p.id, p.data, subject=p.subject, writer=(tenant_id, event_type))

    def confirm(
        self,
        event_id: str,
        data: dict[str, Any] | None = None,
        *,
        subject: str | None = None,
        writer: tuple[str, EventType] | None = None,
        tenant_id: str | None = None,
    ) -> bool:
        """MLflow made the change: complete the data and make the event ready.

        Args:
            writer: ``(tenant, type)`` when the caller is the process that made the
                change. If the reconciler dropped the intent meanwhile (the change took
                longer than it waits), the event is written again under the same id:
                the change happened, so its event must exist, once.
            tenant_id: The event's tenant, when no ``writer`` names it (the
                reconciler's case). With neither, the context's tenant.

        Returns:
            False if the intent was gone already (confirmed by the reconciler, or
            dropped and no ``writer`` given).
        """
        tenant = writer[0] if writer is not None else tenant_id
        with self._db.uow(tenant=tenant) as s:
            # A write first: it takes the row (PostgreSQL) or the database (SQLite) for
            # the transaction, so the reconciler and this call cannot both confirm.
            claimed = s.execute(
                update(EventRow)
                .where(EventRow.id == event_id, EventRow.state == "intent")
                .values(state="claimed")
            ).rowcount
            if not claimed:
                if writer is None or s.get(EventRow, event_id) is not None:
                    return False  # confirmed already: one event
                tenant_id, event_type = writer
                s.add(
                    EventRow(
                        id=event_id,
                        tenant_id=tenant_id,
                        type=event_type.value,
                        subject=subject or "",
                        state="claimed",
                        created_at=now(),
                        data={},
                    )
                )
                s.flush()
            row = s.get(EventRow, event_id)
            assert row is not None
            if subject:
                row.subject = subject
            merged = {**row.data, **(data or {})}
            row.data = check_data(EventType(row.type), merged)
            self._make_ready(s, row)
            return True

    def _drop_quietly(self, event_id: str, tenant_id: str) -> None:
        try:
            self.drop(event_id, tenant_id=tenant_id)
        except Exception:  # noqa: BLE001 - the reconciler drops it later; keep the caller's error
            log.warning("could not drop intent %s; the reconciler will", event_id)

    def drop(self, event_id: str, *, tenant_id: str | None = None) -> None:
        """MLflow did not make the change: forget the intent.

        Args:
            event_id: The intent.
            tenant_id: Its tenant (default: the context's).
        """
        with self._db.uow(tenant=tenant_id) as s:
            s.execute(delete(EventRow).where(EventRow.id == event_id, EventRow.state == "intent"))

    def _make_ready(self, s: Session, row: EventRow) -> None:
        self._notify_after_commit(s, row.tenant_id)
        row.sequence = self._next_sequence(s, row.tenant_id)
        row.state = "ready"
        when = now()
        row.payload = json.dumps(
            {
                "id": row.id,
                "type": row.type,
                "schema_version": SCHEMA_VERSION,
                "tenant_id": row.tenant_id,
                "sequence": row.sequence,
                "time": _iso(when),
                "subject": row.subject,
                "data": row.data,
            },
            separators=(",", ":"),
            sort_keys=True,
        )
        for sink in self._sinks(s, row.tenant_id, row.type):
            s.add(
                DeliveryRow(
                    event_id=row.id,
                    tenant_id=row.tenant_id,
                    sink=sink,
                    order_key=f"{row.tenant_id}:{row.subject}",
                    sequence=row.sequence,
                    state="pending",
                    attempts=0,
                    next_attempt_at=when,
                    created_at=when,
                )
            )

    @staticmethod
    def _next_sequence(s: Session, tenant_id: str) -> int:
        # The UPDATE takes the tenant's row lock until commit: the tenant's events get
        # their numbers in commit order, with no gaps (a rollback undoes the increment).
        insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        s.execute(
            insert(EventSequenceRow).values(tenant_id=tenant_id, last=0).on_conflict_do_nothing()
        )
        return s.execute(
            update(EventSequenceRow)
            .where(EventSequenceRow.tenant_id == tenant_id)
            .values(last=EventSequenceRow.last + 1)
            .returning(EventSequenceRow.last)
        ).scalar_one()

    def _sinks(self, s: Session, tenant_id: str, event_type: str) -> list[str]:
        hooks = s.scalars(
            select(WebhookRow).where(WebhookRow.tenant_id == tenant_id, WebhookRow.active)
        ).all()
        sinks = [
            f"{WEBHOOK_SINK_PREFIX}{h.id}"
            for h in hooks
            if not h.event_types or event_type in h.event_types
        ]
        if self._kafka:
            sinks.append(KAFKA_SINK)
        return sinks

    # ------------------------------------------------------------------- reads

    def feed(
        self,
        tenant_id: str,
        *,
        after: int = 0,
        types: Sequence[EventType] = (),
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """A tenant's ready events after sequence ``after``, oldest first."""
        with self._db.uow(tenant=tenant_id) as s:
            q = select(EventRow.payload).where(
                EventRow.state == "ready",
                EventRow.sequence > after,
            )
            if types:
                q = q.where(EventRow.type.in_([t.value for t in types]))
            rows = s.scalars(q.order_by(EventRow.sequence).limit(limit)).all()
        return [json.loads(p) for p in rows if p]

    def intents(self, older_than_s: float) -> list[EventRow]:
        """Intents older than ``older_than_s`` seconds, of every tenant (for the reconciler)."""
        cutoff = now() - timedelta(seconds=older_than_s)
        with self._db.unscoped() as s:
            rows = s.scalars(
                select(EventRow)
                .where(EventRow.state == "intent", EventRow.created_at <= cutoff)
                .order_by(EventRow.created_at)
                .limit(1000)
            ).all()
        for row in rows:
            row.created_at = aware(row.created_at)  # type: ignore[assignment]
        return list(rows)
