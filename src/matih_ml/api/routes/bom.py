"""A version's ML bill of materials (CycloneDX JSON)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Response

from matih_ml.api.deps import Reader, ServicesDep
from matih_ml.api.params import ModelId, Version
from matih_ml.api.routes._common import ERRORS
from matih_ml.local import LocalClient

# The media type CycloneDX registers for its JSON, with the spec version it follows.
MEDIA_TYPE = "application/vnd.cyclonedx+json; version=1.6"

router = APIRouter(prefix="/api/v1/models", tags=["models"], responses=ERRORS)


@router.get(
    "/{model_id}/versions/{version}/bom",
    response_class=Response,
    responses={
        200: {
            "description": "The version's CycloneDX 1.6 BOM",
            "content": {MEDIA_TYPE: {"schema": {"type": "object"}}},
        }
    },
)
def get_bom(model_id: ModelId, version: Version, services: ServicesDep, who: Reader) -> Response:
    """Get the version's ML bill of materials, a CycloneDX 1.6 JSON document."""
    doc = LocalClient(services, who).models.bom(model_id, version)
    return Response(content=json.dumps(doc), media_type=MEDIA_TYPE)
