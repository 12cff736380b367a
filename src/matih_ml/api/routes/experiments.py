"""Experiments, their runs, and run comparison."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.convert import experiment_read, run_read
from matih_ml.api.deps import Reader, ServicesDep
from matih_ml.api.params import ExperimentId, MaxResults, PageToken
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import ComparisonRow, ExperimentRead, Page, RunRead

router = APIRouter(
    prefix="/api/v1/experiments", tags=["experiments"], responses=ERRORS, route_class=JsonBodyRoute
)


@router.get("", response_model=Page[ExperimentRead])
def list_experiments(
    services: ServicesDep,
    who: Reader,
    page_token: PageToken = None,
    max_results: MaxResults = 100,
) -> Page[ExperimentRead]:
    """List the tenant's experiments."""
    page = services.runs.list_experiments(who.tenant_id, max_results, page_token)
    return Page(
        items=[experiment_read(e) for e in page.items], next_page_token=page.next_page_token
    )


@router.get("/compare", response_model=list[ComparisonRow])
def compare_runs(
    services: ServicesDep,
    who: Reader,
    run_ids: Annotated[
        str, Query(min_length=1, max_length=40_000, description="Comma-separated run ids")
    ],
    metrics: Annotated[
        str, Query(max_length=40_000, description="Comma-separated metric keys")
    ] = "",
    only_differences: Annotated[
        bool, Query(description="Only the parameters whose values differ between the runs")
    ] = False,
) -> list[ComparisonRow]:
    """Compare runs side by side (one query for all of them)."""
    ids = [r.strip() for r in run_ids.split(",") if r.strip()]
    keys = [m.strip() for m in metrics.split(",") if m.strip()]
    rows = services.registry.compare_runs(
        who.tenant_id, ids, keys, only_differences=only_differences
    )
    return [ComparisonRow(**r) for r in rows]


@router.get("/{exp_id}", response_model=ExperimentRead)
def get_experiment(exp_id: ExperimentId, services: ServicesDep, who: Reader) -> ExperimentRead:
    """Get one experiment."""
    return experiment_read(services.runs.get_experiment(who.tenant_id, exp_id))


@router.get("/{exp_id}/runs", response_model=Page[RunRead])
def list_runs(
    exp_id: ExperimentId,
    services: ServicesDep,
    who: Reader,
    page_token: PageToken = None,
    max_results: MaxResults = 100,
) -> Page[RunRead]:
    """List an experiment's runs, newest first."""
    page = services.runs.list_runs(who.tenant_id, exp_id, max_results, page_token)
    return Page(items=[run_read(r) for r in page.items], next_page_token=page.next_page_token)
