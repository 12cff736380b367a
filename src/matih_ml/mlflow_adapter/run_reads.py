"""Reading many runs at once straight from MLflow's SQL tables (for comparisons).

MLflow's ``search_runs`` loads each run's params, tags and metrics with further
queries and parses a filter string on the way: 230 ms for 100 runs here. Three
queries on the tables themselves, confined to the tenant's workspace in SQL, do the
same work in a few milliseconds. Only the SQL stores have this path; a remote MLflow
server is searched through its API.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from matih_ml.mlflow_adapter.in_list import InList
from matih_ml.mlflow_errors import translated

_RUNS = InList(
    "SELECT r.run_uuid, r.name, r.status FROM runs r "
    "JOIN experiments e ON e.experiment_id = r.experiment_id "
    "WHERE e.workspace = :ws AND r.run_uuid IN :ids",
    "ids",
)
_PARAMS = InList("SELECT run_uuid, key, value FROM params WHERE run_uuid IN :ids", "ids")
_ALL_METRICS = InList(
    "SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN :ids", "ids"
)
_METRICS = InList(
    "SELECT run_uuid, key, value, is_nan FROM latest_metrics "
    "WHERE run_uuid IN :ids AND key IN :keys",
    "ids",
    "keys",
)


@dataclass
class RunSummary:
    """What a comparison shows of one run."""

    run_id: str
    run_name: str | None
    status: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def summaries(
    engine: Engine, workspace: str, run_ids: Sequence[str], metric_keys: Sequence[str] | None
) -> dict[str, RunSummary]:
    """The runs among ``run_ids`` that belong to ``workspace``, with their params and the
    latest values of ``metric_keys`` (None: all of them). Runs of other workspaces are
    simply not found."""
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        return {}
    with translated(), engine.connect() as conn:
        found = {
            r[0]: RunSummary(r[0], r[1], r[2])
            for r in conn.execute(_RUNS.on(conn), {"ws": workspace, "ids": ids}).all()
        }
        mine = list(found)
        if mine:
            for run_id, key, value in conn.execute(_PARAMS.on(conn), {"ids": mine}).all():
                found[run_id].params[key] = value
            rows: Iterable[Any]
            if metric_keys is None:
                rows = conn.execute(_ALL_METRICS.on(conn), {"ids": mine}).all()
            elif metric_keys:
                rows = conn.execute(
                    _METRICS.on(conn), {"ids": mine, "keys": list(metric_keys)}
                ).all()
            else:
                rows = []
            for run_id, key, value, is_nan in rows:
                # MLflow stores a NaN as 0 with is_nan set, and its entities give NaN back.
                found[run_id].metrics[key] = math.nan if is_nan else value
    return found
