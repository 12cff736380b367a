"""The in-process doors of the event feed, webhooks and API keys: the same answers as the
routes, the caller's role checked before anything changes, and the caller's tenant the
only one reached."""

from __future__ import annotations

import pytest

from matih_ml.auth.principal import Principal, Role
from matih_ml.contracts.schemas import (
    DeliveryRead,
    EventFeed,
    KeyCreated,
    KeyRead,
    Page,
    WebhookCreated,
    WebhookRead,
)
from matih_ml.errors import ForbiddenError, NotFoundError, ValidationError
from matih_ml.events.catalog import EventType
from matih_ml.local import LocalClient

RECEIVER = "http://127.0.0.1:9/hook"  # nothing listens there: a delivery just fails


def door(services, tenant: str, role: Role, owner: str = "alice") -> LocalClient:
    who = Principal(
        tenant_id=tenant, subject=f"{owner}-key", roles=frozenset({role}), via="test", owner=owner
    )
    return LocalClient(services, who)


def _deleted(services, tenant: str, model: str = "m", version: int = 1) -> str:
    """One ready event in the tenant's feed (a version deleted)."""
    with services.db.uow() as s:
        return services.events.emit(
            s,
            tenant,
            EventType.MODEL_VERSION_DELETED,
            model,
            {"model": model, "version": str(version)},
        )


# ---------------------------------------------------------------------------- events


def test_the_feed_pages_with_its_cursor_and_filters_by_type(services, tenant) -> None:
    ids = [_deleted(services, tenant, version=i) for i in range(1, 4)]
    events = door(services, tenant, Role.VIEWER).events

    first = events.feed(limit=2)
    assert isinstance(first, EventFeed)
    assert [e["id"] for e in first.items] == ids[:2]
    assert first.cursor == first.items[-1]["sequence"]
    rest = events.feed(after=first.cursor)
    assert [e["id"] for e in rest.items] == ids[2:]
    # Nothing new: the cursor stays where the caller was.
    assert events.feed(after=rest.cursor) == EventFeed(items=[], cursor=rest.cursor)

    assert [e["id"] for e in events.feed(types=["MODEL_VERSION_DELETED"]).items] == ids
    assert events.feed(types=["MODEL_REGISTERED"]).items == []
    assert [e["id"] for e in events.all()] == ids


def test_the_feed_refuses_what_the_route_would(services, tenant) -> None:
    events = door(services, tenant, Role.VIEWER).events
    with pytest.raises(ValidationError, match="event type"):
        events.feed(types=["NOT_A_TYPE"])
    for limit in (0, -1, 1001):
        with pytest.raises(ValidationError, match="limit"):
            events.feed(limit=limit)
    with pytest.raises(ValidationError, match="after"):
        events.feed(after=-1)


def test_the_feed_is_the_callers_tenants_only(services, tenant, other_tenant) -> None:
    _deleted(services, tenant)
    assert door(services, other_tenant, Role.ADMIN).events.feed().items == []


def test_the_schemas_are_the_catalogs(services, tenant) -> None:
    schemas = door(services, tenant, Role.VIEWER).events.schemas()
    assert set(schemas["types"]) == {t.value for t in EventType}
    assert schemas["envelope"]["title"] == "Event"
    no_roles = LocalClient(
        services,
        Principal(tenant_id=tenant, subject="x", roles=frozenset(), via="test", owner="x"),
    )
    with pytest.raises(ForbiddenError):
        no_roles.events.schemas()
    with pytest.raises(ForbiddenError):
        no_roles.events.feed()


# -------------------------------------------------------------------------- webhooks


def test_an_admin_manages_webhooks_and_sees_their_deliveries(services, tenant) -> None:
    hooks = door(services, tenant, Role.ADMIN).webhooks
    made = hooks.create(RECEIVER, event_types=["MODEL_VERSION_DELETED"], description="ops")
    assert isinstance(made, WebhookCreated) and made.secret.startswith("whsec_")
    assert (made.url, made.event_types, made.description) == (
        RECEIVER,
        ["MODEL_VERSION_DELETED"],
        "ops",
    )
    assert made.created_by == "alice-key" and made.active

    listed = hooks.list()
    assert isinstance(listed, Page) and [h.id for h in listed.items] == [made.id]
    # The secret is in create's answer only.
    assert not hasattr(listed.items[0], "secret") and "secret" not in listed.items[0].model_dump()
    got = hooks.get(made.id)
    assert type(got) is WebhookRead and got.id == made.id

    event_id = _deleted(services, tenant)
    deliveries = hooks.deliveries(made.id)
    assert [d.event_id for d in deliveries.items] == [event_id]
    assert all(isinstance(d, DeliveryRead) for d in deliveries.items)
    with pytest.raises(ValidationError, match="state"):
        hooks.deliveries(made.id, state="lost")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="limit"):
        hooks.deliveries(made.id, limit=0)

    hooks.delete(made.id)
    assert hooks.list().items == []
    with pytest.raises(NotFoundError):
        hooks.get(made.id)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "https://example.com/a b",
        "https://example.com/\nX-Injected: 1",
        "not a url",
    ],
)
def test_receiver_urls_are_checked_in_process_as_over_rest(services, tenant, url) -> None:
    hooks = door(services, tenant, Role.ADMIN).webhooks
    with pytest.raises(ValidationError, match="url"):
        hooks.create(url)
    assert hooks.list().items == []


def test_unknown_event_types_are_refused(services, tenant) -> None:
    hooks = door(services, tenant, Role.ADMIN).webhooks
    with pytest.raises(ValidationError, match="event type"):
        hooks.create(RECEIVER, event_types=["NOPE"])
    assert hooks.list().items == []


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.APPROVER])
def test_only_admins_touch_webhooks(services, tenant, role) -> None:
    made = door(services, tenant, Role.ADMIN).webhooks.create(RECEIVER)
    hooks = door(services, tenant, role).webhooks
    with pytest.raises(ForbiddenError):
        hooks.create(RECEIVER)
    with pytest.raises(ForbiddenError):
        hooks.delete(made.id)
    for read in (hooks.list, lambda: hooks.get(made.id), lambda: hooks.deliveries(made.id)):
        with pytest.raises(ForbiddenError):
            read()
    assert [h.id for h in door(services, tenant, Role.ADMIN).webhooks.list().items] == [made.id]


def test_another_tenants_admin_cannot_reach_a_webhook(services, tenant, other_tenant) -> None:
    made = door(services, tenant, Role.ADMIN).webhooks.create(RECEIVER)
    theirs = door(services, other_tenant, Role.ADMIN).webhooks
    assert theirs.list().items == []
    with pytest.raises(NotFoundError):
        theirs.get(made.id)
    with pytest.raises(NotFoundError):
        theirs.deliveries(made.id)
    with pytest.raises(NotFoundError):
        theirs.delete(made.id)
    assert door(services, tenant, Role.ADMIN).webhooks.get(made.id).id == made.id


# ------------------------------------------------------------------------------ keys


def test_an_admin_creates_lists_and_revokes_keys(services, tenant) -> None:
    keys = door(services, tenant, Role.ADMIN, owner="alice").keys
    made = keys.create("editor", name="ci", owner="bob")
    assert isinstance(made, KeyCreated) and made.key.startswith(f"mk_{made.key_id}_")
    assert (made.tenant_id, made.name, made.owner, made.role) == (tenant, "ci", "bob", "editor")
    assert made.created_by == "alice" and made.revoked_at is None
    # The key opens its tenant with its role.
    who = services.api_keys.verify(made.key)
    assert (who.tenant_id, who.owner, who.roles) == (tenant, "bob", frozenset({Role.EDITOR}))

    listed = keys.list()
    assert [type(k) for k in listed.items] == [KeyRead]
    assert [k.key_id for k in listed.items] == [made.key_id]
    assert "key" not in listed.items[0].model_dump()  # never the secret again

    revoked = keys.revoke(made.key_id)
    assert type(revoked) is KeyRead and revoked.revoked_at is not None
    with pytest.raises(Exception, match="not valid"):
        services.api_keys.verify(made.key)


def test_a_bad_role_or_name_is_refused(services, tenant) -> None:
    keys = door(services, tenant, Role.ADMIN).keys
    with pytest.raises(ValidationError, match="role"):
        keys.create("root")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="name"):
        keys.create("viewer", name="x" * 129)
    assert keys.list().items == []


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.APPROVER])
def test_only_admins_touch_keys(services, tenant, role) -> None:
    made = door(services, tenant, Role.ADMIN).keys.create("viewer", name="one")
    keys = door(services, tenant, role).keys
    with pytest.raises(ForbiddenError):
        keys.create("admin", name="mine")
    with pytest.raises(ForbiddenError):
        keys.revoke(made.key_id)
    with pytest.raises(ForbiddenError):
        keys.list()
    after = door(services, tenant, Role.ADMIN).keys.list().items
    assert [(k.key_id, k.revoked_at) for k in after] == [(made.key_id, None)]


def test_another_tenants_admin_cannot_list_or_revoke_keys(services, tenant, other_tenant) -> None:
    made = door(services, tenant, Role.ADMIN).keys.create("viewer", name="one")
    theirs = door(services, other_tenant, Role.ADMIN).keys
    assert theirs.list().items == []
    with pytest.raises(NotFoundError):
        theirs.revoke(made.key_id)
    mine = door(services, tenant, Role.ADMIN).keys.list().items
    assert [(k.key_id, k.revoked_at) for k in mine] == [(made.key_id, None)]
    assert services.api_keys.verify(made.key).tenant_id == tenant


def test_an_operator_creates_keys_through_the_same_door(services, tenant) -> None:
    made = LocalClient.operator(services, tenant).keys.create("approver", owner="carol")
    assert made.role == "approver" and made.owner == "carol"
    assert made.created_by.startswith("operator:")
