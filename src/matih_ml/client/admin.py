"""``client.webhooks`` and ``client.keys``: the tenant's admin resources."""

from __future__ import annotations

from collections.abc import Sequence

from matih_ml.client._base import API, SubClient, body, implements, query, seg
from matih_ml.contracts.names import DeliveryStateName, RoleName
from matih_ml.contracts.protocols import KeysContract, WebhooksContract
from matih_ml.contracts.schemas import (
    DeliveryRead,
    KeyCreate,
    KeyCreated,
    KeyRead,
    Page,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
)

_HOOKS = f"{API}/webhooks"
_KEYS = f"{API}/keys"


@implements(WebhooksContract)
class WebhooksClient(SubClient):
    """The tenant's webhooks and their deliveries (admins)."""

    def create(
        self, url: str, *, event_types: Sequence[str] = (), description: str = ""
    ) -> WebhookCreated:
        sent = body(WebhookCreate, url=url, event_types=list(event_types), description=description)
        return self._t.call(WebhookCreated, "POST", _HOOKS, json=sent)

    def list(self) -> Page[WebhookRead]:
        return self._t.call(Page[WebhookRead], "GET", _HOOKS)

    def get(self, webhook_id: str) -> WebhookRead:
        return self._t.call(WebhookRead, "GET", f"{_HOOKS}/{seg(webhook_id)}")

    def delete(self, webhook_id: str) -> None:
        self._t.request("DELETE", f"{_HOOKS}/{seg(webhook_id)}")

    def deliveries(
        self, webhook_id: str, *, state: DeliveryStateName | None = None, limit: int = 100
    ) -> Page[DeliveryRead]:
        params = query(state=state, limit=limit)
        return self._t.call(
            Page[DeliveryRead], "GET", f"{_HOOKS}/{seg(webhook_id)}/deliveries", params=params
        )


@implements(KeysContract)
class KeysClient(SubClient):
    """The tenant's API keys (admins)."""

    def create(self, role: RoleName, *, name: str = "", owner: str = "") -> KeyCreated:
        sent = body(KeyCreate, role=role, name=name, owner=owner)
        return self._t.call(KeyCreated, "POST", _KEYS, json=sent)

    def list(self) -> Page[KeyRead]:
        return self._t.call(Page[KeyRead], "GET", _KEYS)

    def revoke(self, key_id: str) -> KeyRead:
        return self._t.call(KeyRead, "DELETE", f"{_KEYS}/{seg(key_id)}")
