"""API keys of the caller's tenant (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Admin, ServicesDep
from matih_ml.api.params import KeyId
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import KeyCreate, KeyCreated, KeyRead, Page

router = APIRouter(
    prefix="/api/v1/keys", tags=["keys"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, services: ServicesDep, who: Admin) -> KeyCreated:
    """Create an API key for the caller's tenant; the key is in this answer only."""
    new = services.api_keys.create(
        who.tenant_id, body.role, body.name, created_by=who.owner, owner=body.owner
    )
    return KeyCreated(**new.info.__dict__, key=new.secret)


@router.get("", response_model=Page[KeyRead])
def list_keys(services: ServicesDep, who: Admin) -> Page[KeyRead]:
    """List the tenant's API keys (never their secrets)."""
    return Page(items=[KeyRead(**k.__dict__) for k in services.api_keys.list(who.tenant_id)])


@router.delete("/{key_id}", response_model=KeyRead)
def revoke_key(key_id: KeyId, services: ServicesDep, who: Admin) -> KeyRead:
    """Revoke one of the tenant's API keys."""
    return KeyRead(**services.api_keys.revoke(who.tenant_id, key_id).__dict__)
