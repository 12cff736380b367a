"""A run's data inputs: recorded as MLflow dataset inputs on the run, and indexed in our
``matih_run_inputs`` table by digest and by URI for the lineage query.

MLflow keeps the inputs per experiment (its ``datasets`` table has no index on a digest,
and its tenants are workspaces), so the index is ours, one row per run and dataset, read
only through the tenant's session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from mlflow.entities import Dataset, DatasetInput, InputTag
from sqlalchemy import select

from matih_ml import validation
from matih_ml.backend import MlflowBackend
from matih_ml.errors import ValidationError
from matih_ml.mlflow_errors import translated
from matih_ml.store.db import Database
from matih_ml.store.lifecycle_store import insert_if_missing, now
from matih_ml.store.run_inputs import RunInputRow
from matih_ml.tenancy import TenantDirectory

# MLflow's dataset digest column holds 36 characters ("md5:" and 32 hex, exactly); a
# longer digest is cut there and kept whole in the dataset's profile.
MLFLOW_DIGEST_MAX = 36
MAX_INPUTS = 1000
# The most runs one lineage answer lists (the newest first).
MAX_LINEAGE_RUNS = 500
_SOURCE_TYPE_MAX = 36


@dataclass(frozen=True)
class DatasetRef:
    """One dataset a run read.

    Attributes:
        name: What the run calls it (a DVC output's path, a table's name...).
        digest: ``algorithm:hex`` (checked and normalised by :meth:`checked`).
        uri: Where it is: a URI, or a path in the pipeline's repository.
        source_type: ``dvc``, ``uri``, ``s3``, ``table``...
    """

    name: str
    digest: str
    uri: str
    source_type: str = "uri"

    def checked(self) -> DatasetRef:
        """The same dataset with its fields checked and its digest normalised.

        Raises:
            ValidationError: A field is missing, too long or malformed.
        """
        name = validation.dataset_uri(self.name, "name")
        if len(name) > 500:
            raise ValidationError("name must be at most 500 characters.", details={"field": "name"})
        kind = self.source_type
        if not isinstance(kind, str) or not kind or len(kind) > _SOURCE_TYPE_MAX:
            raise ValidationError(
                f"source_type must be 1 to {_SOURCE_TYPE_MAX} characters.",
                details={"field": "source_type"},
            )
        return DatasetRef(
            name, validation.digest(self.digest), validation.dataset_uri(self.uri), kind
        )


def _mlflow_input(d: DatasetRef) -> DatasetInput:
    cut = d.digest[:MLFLOW_DIGEST_MAX]
    profile = json.dumps({"digest": d.digest}) if cut != d.digest else None
    dataset = Dataset(
        name=d.name,
        digest=cut,
        source_type=d.source_type,
        source=json.dumps({"uri": d.uri}),
        profile=profile,
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def _ref(row: RunInputRow) -> DatasetRef:
    return DatasetRef(row.name, row.digest, row.uri, row.source_type)


class RunInputs:
    """Record a run's data inputs, and find the runs that read a dataset.

    Args:
        backend: The MLflow backend (the inputs go on the run).
        tenants: The tenant directory.
        db: The service database (the index).
    """

    def __init__(self, backend: MlflowBackend, tenants: TenantDirectory, db: Database) -> None:
        self._client = backend.client
        self._tenants = tenants
        self._db = db

    def record(
        self, tenant_id: str, run_id: str, datasets: Sequence[DatasetRef]
    ) -> list[DatasetRef]:
        """Record ``datasets`` as inputs of the tenant's run; recording one again is a no-op.

        MLflow's inputs are written first, then the index: a failure between the two is
        mended by recording again (both writes skip what exists).

        Returns:
            Every input the run has in the index, by name.

        Raises:
            ValidationError: No dataset, more than 1000, or a malformed field.
            NotFoundError: No such run in this tenant.
        """
        run_id = validation.run_id(run_id)
        if not datasets or len(datasets) > MAX_INPUTS:
            raise ValidationError(
                f"Give 1 to {MAX_INPUTS} datasets; got {len(datasets)}.",
                details={"field": "datasets"},
            )
        clean = list(dict.fromkeys(d.checked() for d in datasets))
        with self._tenants.scope(tenant_id), translated(f"Run {run_id!r}"):
            self._client.get_run(run_id)
            self._client.log_inputs(run_id, [_mlflow_input(d) for d in clean])
        with self._db.uow(tenant=tenant_id) as s:
            for d in clean:
                insert_if_missing(
                    s,
                    RunInputRow,
                    {
                        "tenant_id": tenant_id,
                        "run_id": run_id,
                        "name": d.name,
                        "digest": d.digest,
                        "uri": d.uri,
                        "source_type": d.source_type,
                        "recorded_at": now(),
                    },
                )
        return self.of_run(tenant_id, run_id)

    def of_run(self, tenant_id: str, run_id: str) -> list[DatasetRef]:
        """The inputs the index holds for one of the tenant's runs, by name."""
        with self._db.uow(tenant=tenant_id) as s:
            rows = s.scalars(
                select(RunInputRow)
                .where(RunInputRow.run_id == run_id)
                .order_by(RunInputRow.name, RunInputRow.digest)
            ).all()
            return [_ref(r) for r in rows]

    def runs_reading(self, tenant_id: str, by: str, value: str) -> dict[str, list[DatasetRef]]:
        """The tenant's runs with an input of this digest (``by="digest"``) or URI.

        Returns:
            Run id -> the inputs that matched, newest recorded run first (at most 500).
        """
        column = RunInputRow.digest if by == "digest" else RunInputRow.uri
        found: dict[str, list[DatasetRef]] = {}
        with self._db.uow(tenant=tenant_id) as s:
            rows = s.scalars(
                select(RunInputRow)
                .where(column == value)
                .order_by(RunInputRow.recorded_at.desc(), RunInputRow.run_id, RunInputRow.name)
            ).all()
            for r in rows:
                if r.run_id in found or len(found) < MAX_LINEAGE_RUNS:
                    found.setdefault(r.run_id, []).append(_ref(r))
        return found
