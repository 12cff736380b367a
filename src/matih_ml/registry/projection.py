"""MLflow's view of the stages: a projection of our store, written after our commit.

The lifecycle's tables decide a version's stage. MLflow's deprecated stage field (so
``models:/NAME/Production`` loads), the ``matih.stage`` version tag and the
``@staging``/``@production`` aliases only show it. A stage move records a projection
request in its own transaction; once that commits, the move projects the model onto
MLflow, and the request is deleted when MLflow matches. A crash or a lost connection in
between leaves the request, which the next pass (at start, and every few seconds in the
background) carries out: the projection is idempotent, computed from our store each
time, so repeating it is safe and a newer move is never undone by an older one.
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from matih_ml.crashpoints import crash_point
from matih_ml.errors import NotFoundError
from matih_ml.mlflow_errors import translated
from matih_ml.registry.metadata import MLFLOW_STAGE, STAGE_ALIAS, TAG_STAGE, Stage
from matih_ml.registry.views import versions_of
from matih_ml.store.db import Database
from matih_ml.store.lifecycle_store import aware, insert_if_missing, lock_model, now
from matih_ml.store.models import StageProjectionRow, VersionStageRow
from matih_ml.store.tenant_filter import bind_tenant
from matih_ml.tenancy import TenantDirectory

log = logging.getLogger(__name__)


def request_projection(s: Session, tenant_id: str, model: str) -> None:
    """Record, in the caller's transaction, that ``model``'s stages must be projected."""
    bind_tenant(s, tenant_id)
    values = {"tenant_id": tenant_id, "model_name": model, "seq": 1, "requested_at": now()}
    if not insert_if_missing(s, StageProjectionRow, values):
        s.execute(
            update(StageProjectionRow)
            .where(
                StageProjectionRow.tenant_id == tenant_id,
                StageProjectionRow.model_name == model,
            )
            .values(seq=StageProjectionRow.seq + 1, requested_at=values["requested_at"])
        )


class StageProjector:
    """Brings MLflow's stage field, stage tags and stage aliases in line with our store.

    Args:
        client: The MLflow client.
        tenants: Binds each tenant's workspace.
        db: The service database (stages and projection requests).
    """

    def __init__(self, client: MlflowClient, tenants: TenantDirectory, db: Database) -> None:
        self._client = client
        self._tenants = tenants
        self._db = db

    def project(self, tenant_id: str, model: str) -> bool:
        """Project one model if it has a request; True when MLflow matches our store.

        Runs under the model's lock, reading the stages as committed then: projections
        of one model (two requests, two replicas, the background pass) take turns, and
        each writes the latest state, so an older one never lands after a newer one.
        Never raises for MLflow or the database being down: the request stays, with
        the error, for the next pass.
        """
        try:
            with self._db.uow(tenant=tenant_id) as s:
                lock_model(s, tenant_id, model)
                row = s.get(StageProjectionRow, (tenant_id, model))
                if row is None:
                    return True
                seq = row.seq
                try:
                    with self._tenants.scope(tenant_id):
                        self._apply(model, _wanted(s, tenant_id, model))
                except NotFoundError:
                    pass  # the model is gone: nothing to show
                s.execute(
                    delete(StageProjectionRow).where(
                        StageProjectionRow.model_name == model,
                        StageProjectionRow.seq == seq,
                    )
                )
            return True
        except Exception as exc:  # noqa: BLE001 - retried by the next pass
            log.warning("projecting the stages of %s/%s failed: %s", tenant_id, model, exc)
            self._note_failure(tenant_id, model, exc)
            return False

    def _note_failure(self, tenant_id: str, model: str, exc: Exception) -> None:
        try:
            with self._db.uow(tenant=tenant_id) as s:
                s.execute(
                    update(StageProjectionRow)
                    .where(StageProjectionRow.model_name == model)
                    .values(
                        attempts=StageProjectionRow.attempts + 1,
                        last_error=f"{type(exc).__name__}: {exc}"[:2000],
                    )
                )
        except Exception:
            log.debug("could not record the projection failure", exc_info=True)

    def pending(self, limit: int = 100) -> list[tuple[str, str, datetime]]:
        """Models with a projection to do, oldest request first (bounded), of every tenant."""
        with self._db.unscoped() as s:
            rows = s.execute(
                select(
                    StageProjectionRow.tenant_id,
                    StageProjectionRow.model_name,
                    StageProjectionRow.requested_at,
                )
                .order_by(StageProjectionRow.requested_at)
                .limit(limit)
            ).all()
        return [(t, m, at) for t, m, at in rows]

    def run_pending(self, limit: int = 100) -> int:
        """One pass over the oldest requests; return how many models now match."""
        try:
            todo = self.pending(limit)
        except Exception as exc:  # noqa: BLE001 - the database is down: the next pass
            log.warning("cannot read the stage projections to do: %s", exc)
            return 0
        return sum(self.project(tenant_id, model) for tenant_id, model, _ in todo)

    def _apply(self, name: str, wanted: dict[int, tuple[Stage, datetime]]) -> None:
        with translated(f"model {name!r}"):
            versions = versions_of(self._client, [name], include_pending=True)
            aliases = dict(self._client.get_registered_model(name).aliases or {})
        stage = {
            int(mv.version): wanted.get(int(mv.version), (Stage.DEVELOPMENT, None))[0]
            for mv in versions
        }
        # Out of production first, into it last: MLflow never shows two production
        # versions, even half-way.
        order = sorted(versions, key=lambda mv: stage[int(mv.version)] is Stage.PRODUCTION)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            for mv in order:
                self._write_version(name, mv, stage[int(mv.version)])
                crash_point("projection.mid")
            for target, alias in STAGE_ALIAS.items():
                holders = [int(mv.version) for mv in versions if stage[int(mv.version)] is target]
                # Several versions may be in staging: the alias follows the latest move.
                latest = max(holders, key=lambda v: (wanted[v][1], v), default=None)
                have = aliases.get(alias)
                with translated(f"alias {alias!r} of {name!r}"):
                    if latest is None and have is not None:
                        self._client.delete_registered_model_alias(name, alias)
                    elif latest is not None and str(have) != str(latest):
                        self._client.set_registered_model_alias(name, alias, str(latest))

    def _write_version(self, name: str, mv: ModelVersion, target: Stage) -> None:
        with translated(f"model {name!r} version {mv.version}"):
            if (mv.tags or {}).get(TAG_STAGE) != target.value:
                self._client.set_model_version_tag(name, mv.version, TAG_STAGE, target.value)
            if mv.current_stage != MLFLOW_STAGE[target]:
                self._client.transition_model_version_stage(
                    name, mv.version, MLFLOW_STAGE[target], archive_existing_versions=False
                )


def _wanted(s: Session, tenant_id: str, model: str) -> dict[int, tuple[Stage, datetime]]:
    bind_tenant(s, tenant_id)
    rows = s.scalars(
        select(VersionStageRow).where(
            VersionStageRow.tenant_id == tenant_id, VersionStageRow.model_name == model
        )
    )
    return {r.version: (Stage(r.stage), aware(r.updated_at)) for r in rows}
