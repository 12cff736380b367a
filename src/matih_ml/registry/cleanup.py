"""Removing what the registry no longer owns: a deleted version's files, the files of
half-finished registrations, and orphaned artifact folders.

MLflow deletes rows and leaves artifacts behind (users of S3 complain of it). Here a
version's files go with it: the registry's copy under ``<tenant>/models/<name>/<n>/``
and, when the version came from ``register_model``, the run that held the upload.

What a crash can leave, and who removes it:

- a version still marked pending (killed between creating it and writing its files):
  hidden from every read at once, deleted with its files by :meth:`Cleanup.collect`;
- a registration run with no version (killed before the version existed): deleted;
- a ``models/<name>/<n>/`` folder with no version behind it: deleted.

Pending versions and registration runs younger than ``older_than_s`` are spared,
because another replica may be in the middle of writing them. Folders need no such
grace: a registration creates its version before it writes a byte, and the folders
are listed before the versions, so a folder being written always has its version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field

from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.entities.model_registry import ModelVersion
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from matih_ml.errors import NotFoundError
from matih_ml.mlflow_errors import translated
from matih_ml.registry.metadata import (
    REGISTRATION_PENDING,
    RUN_KIND_REGISTRATION,
    TAG_ARTIFACT_URI,
    TAG_REGISTRATION,
    TAG_RUN_KIND,
)
from matih_ml.registry.queries import is_safe, quoted
from matih_ml.tenancy import TenantDirectory
from matih_ml.tracking.experiments import all_experiment_ids

log = logging.getLogger(__name__)

# A registration normally finishes in seconds; this leaves a wide margin for a slow
# upload on another replica before its version counts as abandoned.
DEFAULT_GRACE_S = 15 * 60


def delete_files(uri: str) -> None:
    """Delete everything under an artifact URI (local, S3, ...); a no-op if it is empty."""
    # Nothing may have been written there, or the store may not delete: left to gc.
    with suppress(FileNotFoundError, NotImplementedError):
        get_artifact_repository(uri).delete_artifacts()


def remove_registration_run(client: MlflowClient, run_id: str | None) -> None:
    """Delete a run ``register_model`` made, and its files, once no version uses it.

    Runs the user logged are never touched: only runs tagged as registration runs.
    Must be called inside the tenant's scope.
    """
    if not run_id or not is_safe(run_id):
        return
    try:
        with translated(f"run {run_id!r}"):
            run = client.get_run(run_id)
    except NotFoundError:
        return
    if run.data.tags.get(TAG_RUN_KIND) != RUN_KIND_REGISTRATION:
        return
    with translated():
        if client.search_model_versions(f"run_id = {quoted(run_id)}", max_results=1):
            return
    delete_files(run.info.artifact_uri)
    with translated(f"run {run_id!r}"), suppress(NotFoundError):
        client.delete_run(run_id)


def remove_version_files(client: MlflowClient, mv: ModelVersion) -> None:
    """Delete a version's registry copy and, if it was an upload, its registration run.

    Call after the version itself is deleted, inside the tenant's scope.
    """
    uri = (mv.tags or {}).get(TAG_ARTIFACT_URI)
    if uri:
        delete_files(uri)
    remove_registration_run(client, mv.run_id)


@dataclass
class CleanupReport:
    """What one pass found (and removed, unless ``dry_run``)."""

    dry_run: bool
    pending_versions: list[dict[str, str]] = field(default_factory=list)
    orphan_runs: list[dict[str, str]] = field(default_factory=list)
    orphan_folders: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many things were found."""
        return len(self.pending_versions) + len(self.orphan_runs) + len(self.orphan_folders)

    def as_dict(self) -> dict:
        """The report as plain data (for ``--json``)."""
        return {**asdict(self), "total": self.total}


class Cleanup:
    """Finds and removes what half-finished work and MLflow's deletes leave behind.

    Args:
        client: The MLflow client.
        tenants: The tenant directory.
    """

    def __init__(self, client: MlflowClient, tenants: TenantDirectory) -> None:
        self._client = client
        self._tenants = tenants

    def collect(
        self,
        *,
        tenant_ids: list[str] | None = None,
        older_than_s: float = DEFAULT_GRACE_S,
        dry_run: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> CleanupReport:
        """One pass over the given tenants (default: all).

        Args:
            tenant_ids: Only these tenants.
            older_than_s: Spare anything younger than this (seconds).
            dry_run: Report only; remove nothing.
            progress: Called with each tenant's id as its pass starts.

        Returns:
            What was found, and removed unless ``dry_run``.
        """
        report = CleanupReport(dry_run=dry_run)
        ids = tenant_ids or [t.tenant_id for t in self._tenants.list_tenants()]
        cutoff_ms = (time.time() - older_than_s) * 1000
        for tenant_id in ids:
            if progress:
                progress(tenant_id)
            with self._tenants.scope(tenant_id) as tenant:
                # Folders are listed before versions: a version made after the listing
                # then cannot make its fresh folder look orphaned.
                folders = self._version_folders(tenant)
                versions = self._all_versions()
                self._pending(tenant, versions, cutoff_ms, report)
                self._orphan_runs(tenant, versions, cutoff_ms, report)
                self._orphan_folders(tenant, folders, versions, report)
        return report

    # ------------------------------------------------------------------ passes

    def _pending(
        self, tenant: str, versions: list[ModelVersion], cutoff_ms: float, report: CleanupReport
    ) -> None:
        for mv in versions:
            if (mv.tags or {}).get(TAG_REGISTRATION) != REGISTRATION_PENDING:
                continue
            if (mv.creation_timestamp or 0) > cutoff_ms:
                continue
            report.pending_versions.append(
                {"tenant_id": tenant, "model_id": mv.name, "version": str(mv.version)}
            )
            if report.dry_run:
                continue
            log.warning("removing half-registered version %s/%s v%s", tenant, mv.name, mv.version)
            with translated(), suppress(NotFoundError):
                self._client.delete_model_version(mv.name, mv.version)
            delete_files(self._folder(tenant, mv.name, str(mv.version)))
            remove_registration_run(self._client, mv.run_id)
            self._drop_if_empty(tenant, mv.name, cutoff_ms)

    def _orphan_runs(
        self, tenant: str, versions: list[ModelVersion], cutoff_ms: float, report: CleanupReport
    ) -> None:
        used = {mv.run_id for mv in versions}
        experiment_ids = all_experiment_ids(self._client)
        if not experiment_ids:
            return
        runs = []
        token: str | None = None
        with translated():
            while True:
                page = self._client.search_runs(
                    experiment_ids,
                    filter_string=f"tags.`{TAG_RUN_KIND}` = {quoted(RUN_KIND_REGISTRATION)}",
                    run_view_type=ViewType.ACTIVE_ONLY,
                    max_results=10_000,
                    page_token=token,
                )
                runs.extend(page)
                token = page.token
                if not token:
                    break
        for run in runs:
            if run.info.run_id in used or (run.info.start_time or 0) > cutoff_ms:
                continue
            report.orphan_runs.append({"tenant_id": tenant, "run_id": run.info.run_id})
            if not report.dry_run:
                remove_registration_run(self._client, run.info.run_id)

    def _orphan_folders(
        self,
        tenant: str,
        folders: list[tuple[str, str]],
        versions: list[ModelVersion],
        report: CleanupReport,
    ) -> None:
        live = {(mv.name, str(mv.version)) for mv in versions}
        for name, number in folders:
            if (name, number) in live:
                continue
            uri = self._folder(tenant, name, number)
            report.orphan_folders.append(uri)
            if not report.dry_run:
                delete_files(uri)

    # ----------------------------------------------------------------- helpers

    def _folder(self, tenant: str, name: str, number: str) -> str:
        return f"{self._tenants.tenant_artifact_root(tenant)}/models/{name}/{number}"

    def _version_folders(self, tenant: str) -> list[tuple[str, str]]:
        """Every ``models/<name>/<n>`` folder under the tenant's prefix."""
        repo = get_artifact_repository(f"{self._tenants.tenant_artifact_root(tenant)}/models")
        found: list[tuple[str, str]] = []
        try:
            models = [f for f in repo.list_artifacts() if f.is_dir]
        except FileNotFoundError:
            return []
        for model in models:
            for version in repo.list_artifacts(model.path):
                number = version.path.rsplit("/", 1)[-1]
                if version.is_dir and number.isdigit():
                    found.append((model.path.rsplit("/", 1)[-1], number))
        return found

    def _all_versions(self) -> list[ModelVersion]:
        """Every version in the bound tenant, pending ones included."""
        found: list[ModelVersion] = []
        token: str | None = None
        with translated():
            while True:
                page = self._client.search_model_versions(max_results=10_000, page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    return found

    def _drop_if_empty(self, tenant: str, name: str, cutoff_ms: float) -> None:
        """Delete a model that its only, half-registered version left empty.

        Only a model untouched since the cutoff: a registration on another replica
        updates the model when it creates its version, and so keeps it.
        """
        if not is_safe(name):
            return
        with translated(), suppress(NotFoundError):
            if self._client.search_model_versions(f"name = {quoted(name)}", max_results=1):
                return
            rm = self._client.get_registered_model(name)
            if (rm.last_updated_timestamp or 0) > cutoff_ms:
                return
            self._client.delete_registered_model(name)
        delete_files(f"{self._tenants.tenant_artifact_root(tenant)}/models/{name}")
