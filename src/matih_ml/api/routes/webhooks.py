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
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1/webhooks", tags=["webhooks"], responses=ERRORS, route_class=JsonBodyRoute
)

WebhookId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^wh_[a-f0-9]{1,37}$")]


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(body: WebhookCreate, services: ServicesDep, who: Admin) -> WebhookCreated:
    """Add a webhook. Its signing secret is in this answer only: store it now."""
    return LocalClient(services, who).webhooks.create(
        body.url, event_types=body.event_types, description=body.description
    )


@router.get("", response_model=Page[WebhookRead])
def list_webhooks(services: ServicesDep, who: Admin) -> Page[WebhookRead]:
    """The tenant's webhooks."""
    return LocalClient(services, who).webhooks.list()


@router.get("/{webhook_id}", response_model=WebhookRead)
def get_webhook(webhook_id: WebhookId, services: ServicesDep, who: Admin) -> WebhookRead:
    """One webhook."""
    return LocalClient(services, who).webhooks.get(webhook_id)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: WebhookId, services: ServicesDep, who: Admin) -> Response:
    """Remove a webhook; what it had not received yet is cancelled."""
    LocalClient(services, who).webhooks.delete(webhook_id)
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
    return LocalClient(services, who).webhooks.deliveries(webhook_id, state=state, limit=limit)
