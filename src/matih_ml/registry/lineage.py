"""Data lineage: from a dataset (by digest or URI) to the runs that read it, the model
versions registered from those runs, and when each of them served production.

The runs come from the tenant's input index (``tracking.inputs``), the versions from
MLflow's registry in the tenant's workspace, and the production spells from the stage
history, which records every move.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from matih_ml import validation
from matih_ml.backend import MlflowBackend
from matih_ml.errors import NotFoundError
from matih_ml.mlflow_errors import translated
from matih_ml.registry import queries
from matih_ml.registry.metadata import Stage
from matih_ml.registry.views import is_complete, version_info
from matih_ml.store import lifecycle_store as store
from matih_ml.store.db import Database
from matih_ml.store.models import StageHistoryRow
from matih_ml.tenancy import TenantDirectory
from matih_ml.tracking.inputs import DatasetRef, RunInputs

# Run ids per registry search (MLflow's filter string grows with each).
_CHUNK = 100


@dataclass
class Spell:
    """A time a version served production: ``until`` None while it still does."""

    since: datetime
    until: datetime | None = None


@dataclass
class VersionLineage:
    """A version registered from one of the runs, its stage now and its production spells."""

    model_id: str
    version: str
    stage: str
    production: list[Spell] = field(default_factory=list)


@dataclass
class RunLineage:
    """A run that read the dataset: the inputs that matched and its versions."""

    run_id: str
    run_name: str | None
    experiment_id: str
    datasets: list[DatasetRef]
    versions: list[VersionLineage] = field(default_factory=list)


@dataclass
class Lineage:
    """The answer to ``GET /api/v1/lineage``."""

    dataset: str
    matched_by: str
    runs: list[RunLineage]


def production_spells(moves: Sequence[StageHistoryRow]) -> dict[int, list[Spell]]:
    """Each version's spells in production, from a model's moves (oldest first).

    One version serves production at a time, as ``production_at`` reads it: a version's
    spell ends when it leaves production or when another one enters.
    """
    spells: dict[int, list[Spell]] = {}
    serving: int | None = None
    for move in moves:
        at = store.aware(move.at)
        assert at is not None  # a history row always has its time
        leaving = move.from_stage == Stage.PRODUCTION.value and move.version == serving
        entering = move.to_stage == Stage.PRODUCTION.value
        if serving is not None and (leaving or (entering and move.version != serving)):
            spells[serving][-1].until = at
            serving = None
        if entering and serving is None:
            spells.setdefault(move.version, []).append(Spell(at))
            serving = move.version
    return spells


def _versions_of_runs(client: MlflowClient, run_ids: Sequence[str]) -> Iterator[ModelVersion]:
    for i in range(0, len(run_ids), _CHUNK):
        flt = queries.in_list("run_id", run_ids[i : i + _CHUNK])
        token: str | None = None
        while True:
            page = client.search_model_versions(flt, max_results=10_000, page_token=token)
            yield from (mv for mv in page if is_complete(mv))
            token = page.token
            if not token:
                break


class LineageService:
    """Answer which runs read a dataset, which versions came of them, and when those
    served production; every read in the caller's tenant.

    Args:
        backend: The MLflow backend (runs and versions).
        tenants: The tenant directory.
        db: The service database (the input index, stages and history).
        inputs: The run inputs' index.
    """

    def __init__(
        self, backend: MlflowBackend, tenants: TenantDirectory, db: Database, inputs: RunInputs
    ) -> None:
        self._client = backend.client
        self._tenants = tenants
        self._db = db
        self._inputs = inputs

    def lineage(self, tenant_id: str, dataset: str) -> Lineage:
        """The tenant's runs that read ``dataset`` (a digest or a URI), newest first.

        Raises:
            ValidationError: ``dataset`` is a malformed digest, or empty.
        """
        by, value = validation.dataset_ref(dataset)
        matched = self._inputs.runs_reading(tenant_id, by, value)
        if not matched:
            return Lineage(value, by, [])
        runs: list[RunLineage] = []
        with self._tenants.scope(tenant_id) as tenant:
            for run_id, refs in matched.items():
                try:
                    with translated(f"Run {run_id!r}"):
                        info = self._client.get_run(run_id).info
                except NotFoundError:
                    continue  # deleted for good since: its inputs no longer lead anywhere
                runs.append(RunLineage(run_id, info.run_name, info.experiment_id, refs))
            with translated():
                ids = [r.run_id for r in runs]
                found = [version_info(tenant, mv) for mv in _versions_of_runs(self._client, ids)]
        by_run = {r.run_id: r for r in runs}
        models = sorted({v.model_id for v in found})
        with self._db.uow(tenant=tenant_id) as s:
            stages = {m: store.stages(s, tenant_id, m) for m in models}
            spells = {m: production_spells(store.history(s, tenant_id, m)) for m in models}
        for v in sorted(found, key=lambda v: (v.model_id, int(v.version))):
            number = int(v.version)
            by_run[str(v.run_id)].versions.append(
                VersionLineage(
                    v.model_id,
                    v.version,
                    stages[v.model_id].get(number, v.stage),
                    spells[v.model_id].get(number, []),
                )
            )
        return Lineage(value, by, runs)
