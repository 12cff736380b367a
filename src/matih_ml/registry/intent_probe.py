"""The registry's answer to the reconciler: did an intent's change happen in MLflow?

A run's start and end, a version's registration and its deletion are looked up by the
intent's tag, as MLflow holds them; the reconciler (:mod:`matih_ml.events.reconciler`)
confirms or drops the intent on the answer.
"""

from __future__ import annotations

import time

from mlflow import MlflowClient

from matih_ml import urls
from matih_ml.errors import NotFoundError
from matih_ml.events.catalog import EventType
from matih_ml.events.outbox import TAG_EVENT_INTENT
from matih_ml.events.reconciler import Decision
from matih_ml.mlflow_errors import translated
from matih_ml.registry import queries
from matih_ml.registry.metadata import TAG_CREATED_BY, TAG_FRAMEWORK
from matih_ml.registry.views import is_complete
from matih_ml.store.lifecycle_store import aware, now
from matih_ml.store.models import EventRow

_TERMINAL = {"FINISHED", "FAILED", "KILLED"}


class MlflowIntentProbe:
    """Looks in MLflow for the change an intent announced.

    Args:
        client: The MLflow client.
        registration_grace_s: How long a half-registered version may stay pending
            before its intent is dropped (the cleanup deletes the version then).
    """

    def __init__(self, client: MlflowClient, *, registration_grace_s: float = 900.0) -> None:
        self._client = client
        self._registration_grace_s = registration_grace_s

    def __call__(self, row: EventRow) -> Decision:
        """Whether the intent's change happened (its tenant is bound by the caller)."""
        kind = EventType(row.type)
        if kind is EventType.MODEL_TRAINING_STARTED:
            return self._run_started(row)
        if kind is EventType.MODEL_TRAINING_COMPLETED:
            return self._run_completed(row)
        if kind is EventType.MODEL_REGISTERED:
            return self._registered(row)
        if kind is EventType.MODEL_VERSION_DELETED:
            return self._deleted(row)
        return "drop", None, None

    def _run_started(self, row: EventRow) -> Decision:
        experiment_id = str(row.data.get("experiment_id", ""))
        if not experiment_id.isdigit():
            return "drop", None, None
        with translated():
            runs = self._client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{TAG_EVENT_INTENT}` = {queries.quoted(row.id)}",
                max_results=1,
            )
        if not runs:
            return "drop", None, None
        run_id = runs[0].info.run_id
        return "confirm", {"run_id": run_id}, f"run/{run_id}"

    def _run_completed(self, row: EventRow) -> Decision:
        try:
            with translated("run"):
                run = self._client.get_run(str(row.data.get("run_id", "")))
        except NotFoundError:
            return "drop", None, None
        if run.info.status not in _TERMINAL:
            return "drop", None, None
        data = {"status": run.info.status, "metrics": dict(run.data.metrics)}
        return "confirm", data, None

    def _registered(self, row: EventRow) -> Decision:
        name = str(row.data.get("model", ""))
        if not queries.is_safe(name):
            return "drop", None, None
        with translated():
            versions = self._client.search_model_versions(
                f"name = {queries.quoted(name)}", max_results=10_000
            )
        mine = [v for v in versions if (v.tags or {}).get(TAG_EVENT_INTENT) == row.id]
        if not mine:
            # No version yet: its writer may still be uploading the model (a large one
            # to S3 takes longer than the intent grace), for as long as a half-registered
            # version may stay pending. Dropping it earlier would lose the event of a
            # version that becomes visible later.
            created = aware(row.created_at) or now()
            age = (now() - created).total_seconds()
            return ("drop" if age > self._registration_grace_s else "wait"), None, None
        mv = mine[0]
        if not is_complete(mv):
            # Its writer may still be at it, until the cleanup's grace period is over.
            age = time.time() - (mv.creation_timestamp or 0) / 1000
            return ("drop" if age > self._registration_grace_s else "wait"), None, None
        tags = mv.tags or {}
        data = {
            "version": str(mv.version),
            "framework": tags.get(TAG_FRAMEWORK, ""),
            "run_id": mv.run_id,
            "artifact_uri": urls.version_files(name, str(mv.version)),
            "created_by": tags.get(TAG_CREATED_BY, ""),
        }
        return "confirm", data, None

    def _deleted(self, row: EventRow) -> Decision:
        try:
            with translated("version"):
                self._client.get_model_version(
                    str(row.data.get("model", "")), str(row.data.get("version", ""))
                )
        except NotFoundError:
            return "confirm", None, None
        # Still there: the delete did not happen.
        return "drop", None, None
