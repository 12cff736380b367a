"""A version's signature, checked against its stored files (docs/provenance.md)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep
from matih_ml.api.params import ModelId, Version
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import VerificationRead
from matih_ml.local import LocalClient

router = APIRouter(
    prefix="/api/v1/models", tags=["provenance"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.get("/{model_id}/versions/{version}/verification", response_model=VerificationRead)
async def verification(
    model_id: ModelId, version: Version, services: ServicesDep, who: Reader
) -> VerificationRead:
    """Check a version's stored files against its signature (a report; nothing changes)."""
    door = LocalClient(services, who).models
    # Downloads and hashes the files: off the event loop.
    return await run_in_threadpool(door.verify, model_id, version)
