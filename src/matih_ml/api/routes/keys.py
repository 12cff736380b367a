"""API keys of the caller's tenant (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Admin, ServicesDep
from matih_ml.api.params import KeyId
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import KeyCreate, KeyCreated, KeyRead, Page
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1/keys", tags=["keys"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, services: ServicesDep, who: Admin) -> KeyCreated:
    """Create an API key for the caller's tenant; the key is in this answer only."""
    return LocalClient(services, who).keys.create(body.role, name=body.name, owner=body.owner)


@router.get("", response_model=Page[KeyRead])
def list_keys(services: ServicesDep, who: Admin) -> Page[KeyRead]:
    """List the tenant's API keys (never their secrets)."""
    return LocalClient(services, who).keys.list()


@router.delete("/{key_id}", response_model=KeyRead)
def revoke_key(key_id: KeyId, services: ServicesDep, who: Admin) -> KeyRead:
    """Revoke one of the tenant's API keys."""
    return LocalClient(services, who).keys.revoke(key_id)
