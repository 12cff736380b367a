"""Data lineage: record a run's data inputs, and ask which runs and versions came from a
dataset; HTTP over ``LocalClient.runs`` (the rules there)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep, Writer
from matih_ml.api.params import RunId
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import LineageRead, RunInputsIn, RunInputsRead
from matih_ml.local import LocalClient

router = APIRouter(tags=["lineage"], responses=ERRORS, route_class=JsonBodyRoute)


@router.post("/api/v1/runs/{run_id}/inputs", response_model=RunInputsRead)
def log_inputs(
    run_id: RunId, body: RunInputsIn, services: ServicesDep, who: Writer
) -> RunInputsRead:
    """Record the datasets a run read (by URI and digest); recording one again is a no-op."""
    return LocalClient(services, who).runs.log_inputs(run_id, body.datasets)


@router.get("/api/v1/lineage", response_model=LineageRead)
def lineage(
    services: ServicesDep,
    who: Reader,
    dataset: Annotated[
        str,
        Query(
            min_length=1,
            max_length=1000,
            description=(
                "A digest (md5:, sha1:, sha256: or sha512: and its hex; bare hex by its "
                "length) or a dataset's URI or path"
            ),
        ),
    ],
) -> LineageRead:
    """Which runs read a dataset, which versions came of them, and when those served production."""
    return LocalClient(services, who).runs.lineage(dataset)
