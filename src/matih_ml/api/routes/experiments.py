"""Experiments, their runs, and run comparison: HTTP over ``LocalClient.experiments``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from matih_ml.api.body import JsonBodyRoute
from matih_ml.api.deps import Reader, ServicesDep
from matih_ml.api.params import ExperimentId, MaxResults, PageToken
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import ComparisonRow, ExperimentRead, Page, RunRead
from matih_ml.local import LocalClient

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
    return LocalClient(services, who).experiments.list(
        page_token=page_token, max_results=max_results
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
    return LocalClient(services, who).experiments.compare(
        ids, metrics=keys, only_differences=only_differences
    )


@router.get("/{exp_id}", response_model=ExperimentRead)
def get_experiment(exp_id: ExperimentId, services: ServicesDep, who: Reader) -> ExperimentRead:
    """Get one experiment."""
    return LocalClient(services, who).experiments.get(exp_id)


@router.get("/{exp_id}/runs", response_model=Page[RunRead])
def list_runs(
    exp_id: ExperimentId,
    services: ServicesDep,
    who: Reader,
    page_token: PageToken = None,
    max_results: MaxResults = 100,
) -> Page[RunRead]:
    """List an experiment's runs, newest first."""
    return LocalClient(services, who).experiments.list_runs(
        exp_id, page_token=page_token, max_results=max_results
    )
