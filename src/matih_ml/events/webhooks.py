"""Webhooks per tenant: created and removed by the tenant's admins, and their deliveries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.events.catalog import parse_types
from matih_ml.events.outbox import WEBHOOK_SINK_PREFIX
from matih_ml.events.secret_box import SecretBox
from matih_ml.events.signing import new_secret
from matih_ml.store.db import Database
from matih_ml.store.lifecycle_store import aware, now
from matih_ml.store.models import DeliveryRow, EventRow, WebhookRow

MAX_PER_TENANT = 50
DELIVERY_STATES = ("pending", "delivered", "dead", "cancelled")


@dataclass(frozen=True)
class Webhook:
    """A webhook as its admins see it (never with its secret, except once at creation)."""

    id: str
    tenant_id: str
    url: str
    description: str
    event_types: list[str]
    active: bool
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Delivery:
    """One event's delivery to one webhook."""

    event_id: str
    event_type: str
    sequence: int
    state: str
    attempts: int
    last_status: int | None
    last_error: str
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def _webhook(row: WebhookRow) -> Webhook:
    return Webhook(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types or []),
        active=row.active,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        created_by=row.created_by,
    )


def _check_url(url: str) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise ValidationError("url must be a string of at most 2000 characters.")
    if any(c <= " " or c == "\x7f" for c in url):
        # urlsplit drops tabs and line breaks before parsing, so the check below would
        # pass a URL whose stored text still has them (header injection at delivery).
        raise ValidationError(
            "url must not contain spaces or control characters.", details={"field": "url"}
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise ValidationError(
            "url must be an http:// or https:// URL with a host and no credentials.",
            details={"field": "url"},
        )
    return url


class WebhookStore:
    """Creates, lists and deletes webhooks, and reads their deliveries.

    Args:
        db: The service database.
        box: Encrypts the signing secrets at rest.
    """

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box

    def create(
        self,
        tenant_id: str,
        url: str,
        *,
        event_types: list[str] | None = None,
        description: str = "",
        actor: str = "",
    ) -> tuple[Webhook, str]:
        """Add a webhook; return it and its signing secret (shown this once).

        Raises:
            ValidationError: For a bad URL or an unknown event type, or too many webhooks.
        """
        url = _check_url(url)
        types = sorted({t.value for t in parse_types(event_types, "event_types")})
        secret = new_secret()
        encrypted = self._box.encrypt(secret)
        with self._db.uow(tenant=tenant_id) as s:
            row = WebhookRow(
                id=f"wh_{uuid.uuid4().hex[:24]}",
                tenant_id=tenant_id,
                url=url,
                description=description[:1000],
                event_types=types,
                secret_encrypted=encrypted,
                active=True,
                created_at=now(),
                created_by=actor,
            )
            s.add(row)
            count = len(s.scalars(select(WebhookRow.id)).all())
            if count > MAX_PER_TENANT:
                raise ValidationError(
                    f"A tenant may have at most {MAX_PER_TENANT} webhooks.",
                    details={"limit": MAX_PER_TENANT},
                )
            s.flush()
            return _webhook(row), secret

    def list(self, tenant_id: str) -> list[Webhook]:
        """The tenant's webhooks, oldest first."""
        with self._db.uow(tenant=tenant_id) as s:
            rows = s.scalars(select(WebhookRow).order_by(WebhookRow.created_at)).all()
            return [_webhook(r) for r in rows]

    def get(self, tenant_id: str, webhook_id: str) -> Webhook:
        """One of the tenant's webhooks.

        Raises:
            NotFoundError: If it is not there (or is another tenant's).
        """
        with self._db.uow(tenant=tenant_id) as s:
            return _webhook(self._row(s, webhook_id))

    def delete(self, tenant_id: str, webhook_id: str) -> None:
        """Remove a webhook; its undelivered events are cancelled."""
        with self._db.uow(tenant=tenant_id) as s:
            row = self._row(s, webhook_id)
            s.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.sink == f"{WEBHOOK_SINK_PREFIX}{row.id}",
                    DeliveryRow.state == "pending",
                )
                .values(state="cancelled")
            )
            s.delete(row)

    def deliveries(
        self, tenant_id: str, webhook_id: str, *, state: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """The webhook's deliveries, newest event first."""
        if state is not None and state not in DELIVERY_STATES:
            raise ValidationError(
                f"state must be one of {', '.join(DELIVERY_STATES)}.", details={"field": "state"}
            )
        with self._db.uow(tenant=tenant_id) as s:
            self._row(s, webhook_id)
            q = (
                select(DeliveryRow, EventRow.type)
                .join(EventRow, EventRow.id == DeliveryRow.event_id)
                .where(DeliveryRow.sink == f"{WEBHOOK_SINK_PREFIX}{webhook_id}")
            )
            if state:
                q = q.where(DeliveryRow.state == state)
            rows = s.execute(q.order_by(DeliveryRow.sequence.desc()).limit(limit)).all()
            return [
                Delivery(
                    event_id=d.event_id,
                    event_type=t,
                    sequence=d.sequence,
                    state=d.state,
                    attempts=d.attempts,
                    last_status=d.last_status,
                    last_error=d.last_error,
                    next_attempt_at=aware(d.next_attempt_at) if d.state == "pending" else None,
                    delivered_at=aware(d.delivered_at),
                )
                for d, t in rows
            ]

    def target(self, tenant_id: str, webhook_id: str) -> tuple[str, str] | None:
        """The URL and plain secret of one of the tenant's active webhooks (for the
        dispatcher), or None."""
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(WebhookRow, webhook_id)
            if row is None or not row.active:
                return None
            return row.url, self._box.decrypt(row.secret_encrypted)

    @staticmethod
    def _row(s: Session, webhook_id: str) -> WebhookRow:
        # The session is the tenant's: another tenant's webhook is not found either.
        row = s.get(WebhookRow, webhook_id) if isinstance(webhook_id, str) else None
        if row is None:
            raise NotFoundError(f"Webhook {str(webhook_id)[:60]!r} not found.")
        return row
