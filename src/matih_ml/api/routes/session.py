"""Who the caller is: its tenant, name and roles (the web pages' login uses it)."""

from __future__ import annotations

from fastapi import APIRouter

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import PrincipalDep
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import WhoAmI

router = APIRouter(prefix="/api/v1", tags=["session"], responses=ERRORS, route_class=JsonBodyRoute)


@router.get("/whoami", response_model=WhoAmI)
async def whoami(who: PrincipalDep) -> WhoAmI:
    """The credential's tenant, subject, owner and roles."""
    return WhoAmI(
        tenant_id=who.tenant_id,
        subject=who.subject,
        owner=who.owner,
        roles=sorted(r.value for r in who.roles),
        via=who.via,
    )
