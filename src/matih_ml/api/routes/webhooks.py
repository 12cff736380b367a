"""A tenant's webhooks (admins only), and their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Admin, ServicesDep
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.names import DeliveryStateName
from matih_ml.contracts.schemas import (
    DeliveryRead,
    Page,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
)

router = APIRouter(
    prefix="/api/v1/webhooks", tags=["webhooks"], responses=ERRORS, route_class=JsonBodyRoute
)

WebhookId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^wh_[a-f0-9]{1,37}$")]


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(body: WebhookCreate, services: ServicesDep, who: Admin) -> WebhookCreated:
    """Add a webhook. Its signing secret is in this answer only: store it now."""
    hook, secret = services.webhooks.create(
        who.tenant_id,
        body.url,
        event_types=body.event_types,
        description=body.description,
        actor=who.subject,
    )
    return WebhookCreated(**hook.__dict__, secret=secret)


@router.get("", response_model=Page[WebhookRead])
def list_webhooks(services: ServicesDep, who: Admin) -> Page[WebhookRead]:
    """The tenant's webhooks."""
    return Page(items=[WebhookRead(**h.__dict__) for h in services.webhooks.list(who.tenant_id)])


@router.get("/{webhook_id}", response_model=WebhookRead)
def get_webhook(webhook_id: WebhookId, services: ServicesDep, who: Admin) -> WebhookRead:
    """One webhook."""
    return WebhookRead(**services.webhooks.get(who.tenant_id, webhook_id).__dict__)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: WebhookId, services: ServicesDep, who: Admin) -> Response:
    """Remove a webhook; what it had not received yet is cancelled."""
    services.webhooks.delete(who.tenant_id, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryRead])
def list_deliveries(
    webhook_id: WebhookId,
    services: ServicesDep,
    who: Admin,
    state: DeliveryStateName | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[DeliveryRead]:
    """The webhook's deliveries, newest first: state, attempts, last status and error."""
    items = services.webhooks.deliveries(who.tenant_id, webhook_id, state=state, limit=limit)
    return Page(items=[DeliveryRead(**d.__dict__) for d in items])
