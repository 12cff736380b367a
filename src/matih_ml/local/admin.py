"""The tenant's webhooks and API keys, in process (``WebhooksContract``, ``KeysContract``).

Both are admins' business: every method needs ``Permission.ADMIN`` and reaches the
caller's tenant only, so an admin of one tenant neither sees nor changes another's.
"""

from __future__ import annotations

from collections.abc import Sequence

from matih_ml.auth.principal import Permission
from matih_ml.contracts.checks import checked
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
from matih_ml.events.webhooks import Delivery
from matih_ml.local._base import MAX_PAGE, Door, implements, within


@implements(WebhooksContract)
class LocalWebhooks(Door):
    """The tenant's webhooks and their deliveries (admins).

    The receiver URL's rules (http or https, a host, no credentials, no control
    characters) and the event types' are the store's (``events.webhooks``), the one place
    both doors pass through.
    """

    def create(
        self, url: str, *, event_types: Sequence[str] = (), description: str = ""
    ) -> WebhookCreated:
        tenant = self._need(Permission.ADMIN)
        if isinstance(event_types, str):
            event_types = [event_types]  # one type, not its letters
        # The REST body's limits hold for every door (20 types, a 2,000-character URL...).
        checked(WebhookCreate, url=url, event_types=list(event_types), description=description)
        hook, secret = self._s.webhooks.create(
            tenant,
            url,
            event_types=list(event_types),
            description=description,
            actor=self._who.subject,
        )
        return WebhookCreated(**hook.__dict__, secret=secret)

    def list(self) -> Page[WebhookRead]:
        tenant = self._need(Permission.ADMIN)
        return Page(items=[WebhookRead(**h.__dict__) for h in self._s.webhooks.list(tenant)])

    def get(self, webhook_id: str) -> WebhookRead:
        tenant = self._need(Permission.ADMIN)
        return WebhookRead(**self._s.webhooks.get(tenant, webhook_id).__dict__)

    def delete(self, webhook_id: str) -> None:
        tenant = self._need(Permission.ADMIN)
        self._s.webhooks.delete(tenant, webhook_id)

    def deliveries(
        self, webhook_id: str, *, state: DeliveryStateName | None = None, limit: int = 100
    ) -> Page[DeliveryRead]:
        tenant = self._need(Permission.ADMIN)
        # Annotated: mypy loses the store's ``-> list[Delivery]`` here (it and this class
        # both have a ``list`` method that shadows the builtin in their scope).
        found: Sequence[Delivery] = self._s.webhooks.deliveries(
            tenant, webhook_id, state=state, limit=within(limit, "limit", 1, MAX_PAGE)
        )
        return Page(items=[DeliveryRead(**d.__dict__) for d in found])


@implements(KeysContract)
class LocalKeys(Door):
    """The tenant's API keys (admins). A key's secret is in ``create``'s answer only."""

    def create(self, role: RoleName, *, name: str = "", owner: str = "") -> KeyCreated:
        tenant = self._need(Permission.ADMIN)
        checked(KeyCreate, role=role, name=name, owner=owner)
        # The creator recorded is the caller's owner (a person), as four eyes compares.
        new = self._s.api_keys.create(tenant, role, name, created_by=self._who.owner, owner=owner)
        return KeyCreated(**new.info.__dict__, key=new.secret)

    def list(self) -> Page[KeyRead]:
        tenant = self._need(Permission.ADMIN)
        return Page(items=[KeyRead(**k.__dict__) for k in self._s.api_keys.list(tenant)])

    def revoke(self, key_id: str) -> KeyRead:
        tenant = self._need(Permission.ADMIN)
        return KeyRead(**self._s.api_keys.revoke(tenant, key_id).__dict__)
