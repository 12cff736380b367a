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

A pass is a plan, then its execution. :meth:`Cleanup.plan` only reads, and says what
it would remove and what it keeps, each with the reason; ``gc --dry-run`` prints the
plan, and ``gc`` executes the same plan, so the two cannot disagree. Execution
re-checks each item (a registration may finish, or a version take a folder's number,
in between) and reports anything it then spares as kept, with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
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


def remove_registration_run(client: MlflowClient, run_id: str | None) -> bool:
    """Delete a run ``register_model`` made, and its files, once no version uses it.

    Runs the user logged are never touched: only runs tagged as registration runs.
    Must be called inside the tenant's scope.

    Returns:
        Whether the run was removed (False: not a registration run, gone, or in use).
    """
    if not run_id or not is_safe(run_id):
        return False
    try:
        with translated(f"run {run_id!r}"):
            run = client.get_run(run_id)
    except NotFoundError:
        return False
    if run.data.tags.get(TAG_RUN_KIND) != RUN_KIND_REGISTRATION:
        return False
    if run.info.lifecycle_stage == "deleted":
        return False
    with translated():
        if client.search_model_versions(f"run_id = {quoted(run_id)}", max_results=1):
            return False
    delete_files(run.info.artifact_uri)
    with translated(f"run {run_id!r}"), suppress(NotFoundError):
        client.delete_run(run_id)
    return True


def remove_version_files(client: MlflowClient, mv: ModelVersion) -> None:
    """Delete a version's registry copy and, if it was an upload, its registration run.

    Call after the version itself is deleted, inside the tenant's scope.
    """
    uri = (mv.tags or {}).get(TAG_ARTIFACT_URI)
    if uri:
        delete_files(uri)
    remove_registration_run(client, mv.run_id)


class ItemKind(StrEnum):
    """What a plan item is about."""

    PENDING_VERSION = "pending_version"
    ORPHAN_RUN = "orphan_run"
    ORPHAN_FOLDER = "orphan_folder"
    EMPTY_MODEL = "empty_model"


@dataclass(frozen=True)
class PlanItem:
    """One thing a pass removes or keeps, and why.

    For a pending version, ``uri`` is its folder and ``run_id`` its upload's run when
    that run goes too (no other version uses it); for an empty model, ``uri`` is its
    ``models/<name>`` folder.
    """

    kind: ItemKind
    tenant_id: str
    what: str
    reason: str
    age_s: float | None = None
    model_id: str | None = None
    version: str | None = None
    run_id: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class CleanupPlan:
    """What one pass will remove and what it keeps, each item with its reason.

    Removals are in execution order: versions first (a version holds its run and its
    model), then runs, folders, and the models the versions left empty.
    """

    grace_s: float
    cutoff_ms: float
    remove: list[PlanItem] = field(default_factory=list)
    keep: list[PlanItem] = field(default_factory=list)


@dataclass
class CleanupReport:
    """What one pass removed (or, with ``dry_run``, would remove) and what it kept."""

    dry_run: bool
    grace_s: float
    removed: list[PlanItem] = field(default_factory=list)
    kept: list[PlanItem] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many things were (or would be) removed."""
        return len(self.removed)

    def _of(self, kind: ItemKind) -> list[PlanItem]:
        return [i for i in self.removed if i.kind is kind]

    @property
    def pending_versions(self) -> list[PlanItem]:
        """The half-registered versions removed."""
        return self._of(ItemKind.PENDING_VERSION)

    @property
    def orphan_runs(self) -> list[PlanItem]:
        """The registration runs with no version removed."""
        return self._of(ItemKind.ORPHAN_RUN)

    @property
    def orphan_folders(self) -> list[PlanItem]:
        """The version folders with no version removed."""
        return self._of(ItemKind.ORPHAN_FOLDER)

    def as_dict(self) -> dict:
        """The report as plain data (for ``--json``): both lists, and their counts."""
        return {
            "dry_run": self.dry_run,
            "grace_s": self.grace_s,
            "remove": [_plain(i) for i in self.removed],
            "keep": [_plain(i) for i in self.kept],
            "counts": {"remove": len(self.removed), "keep": len(self.kept)},
            "total": self.total,
        }


def _plain(item: PlanItem) -> dict:
    return {**asdict(item), "kind": item.kind.value}


def _age_s(timestamp_ms: int | None, now_ms: float) -> float:
    return max(0.0, (now_ms - (timestamp_ms or 0)) / 1000)


def _grace_phrase(grace_s: float, age_s: float, *, expired: bool) -> str:
    # ``expired`` is the planner's own cutoff test, passed in so that the words can
    # never contradict the decision (at an age of exactly the grace, say).
    side = "older" if expired else "younger"
    return f"{side} than the {grace_s:g} s grace period (age {age_s:.0f} s)"


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
        """Plan one pass over the given tenants (default: all), and execute it.

        Args:
            tenant_ids: Only these tenants.
            older_than_s: Spare anything younger than this (seconds).
            dry_run: Report the plan only; remove nothing.
            progress: Called with each tenant's id as its planning starts.

        Returns:
            What was removed (would be, with ``dry_run``) and what was kept, and why.
        """
        plan = self.plan(tenant_ids=tenant_ids, older_than_s=older_than_s, progress=progress)
        if dry_run:
            return CleanupReport(
                dry_run=True, grace_s=plan.grace_s, removed=list(plan.remove), kept=list(plan.keep)
            )
        return self.execute(plan)

    # -------------------------------------------------------------------- plan

    def plan(
        self,
        *,
        tenant_ids: list[str] | None = None,
        older_than_s: float = DEFAULT_GRACE_S,
        progress: Callable[[str], None] | None = None,
    ) -> CleanupPlan:
        """Decide what a pass removes and keeps, reading only.

        Args:
            tenant_ids: Only these tenants (default: all).
            older_than_s: Spare pending versions and registration runs younger than this.
            progress: Called with each tenant's id as its planning starts.

        Returns:
            The plan: removals in execution order, and what is kept, each with why.
        """
        now_ms = time.time() * 1000
        plan = CleanupPlan(grace_s=older_than_s, cutoff_ms=now_ms - older_than_s * 1000)
        ids = tenant_ids or [t.tenant_id for t in self._tenants.list_tenants()]
        for tenant_id in ids:
            if progress:
                progress(tenant_id)
            with self._tenants.scope(tenant_id) as tenant:
                # Folders are listed before versions: a version made after the listing
                # then cannot make its fresh folder look orphaned.
                folders = self._version_folders(tenant)
                versions = self._all_versions()
                runs = self._registration_runs()
                self._plan_tenant(tenant, folders, versions, runs, now_ms, plan)
        return plan

    def _plan_tenant(
        self,
        tenant: str,
        folders: list[tuple[str, str]],
        versions: list[ModelVersion],
        runs: list[Run],
        now_ms: float,
        plan: CleanupPlan,
    ) -> None:
        grace = plan.grace_s
        registration_runs = {r.info.run_id for r in runs}
        pending = [
            mv for mv in versions if (mv.tags or {}).get(TAG_REGISTRATION) == REGISTRATION_PENDING
        ]
        doomed = [mv for mv in pending if (mv.creation_timestamp or 0) <= plan.cutoff_ms]
        doomed_keys = {(mv.name, str(mv.version)) for mv in doomed}
        survivors = [mv for mv in versions if (mv.name, str(mv.version)) not in doomed_keys]
        used_after = {mv.run_id for mv in survivors}
        present = set(folders)

        for mv in pending:
            age = _age_s(mv.creation_timestamp, now_ms)
            number = str(mv.version)
            if (mv.name, number) not in doomed_keys:
                plan.keep.append(
                    PlanItem(
                        ItemKind.PENDING_VERSION,
                        tenant,
                        f"half-registered version {mv.name} v{number}",
                        f"pending registration {_grace_phrase(grace, age, expired=False)}; "
                        "its writer may still be at work",
                        age_s=round(age, 1),
                        model_id=mv.name,
                        version=number,
                    )
                )
                continue
            # Its upload's run goes with it unless another version still uses it.
            run_id = (
                mv.run_id
                if mv.run_id in registration_runs and mv.run_id not in used_after
                else None
            )
            extras = []
            if (mv.name, number) in present:
                extras.append(f"its files at {self._folder(tenant, mv.name, number)}")
            if run_id:
                extras.append(f"its upload run {run_id}")
            plan.remove.append(
                PlanItem(
                    ItemKind.PENDING_VERSION,
                    tenant,
                    f"half-registered version {mv.name} v{number}"
                    + (f" ({', '.join(extras)})" if extras else ""),
                    f"pending registration {_grace_phrase(grace, age, expired=True)}: "
                    "its writer is gone",
                    age_s=round(age, 1),
                    model_id=mv.name,
                    version=number,
                    run_id=run_id,
                    uri=self._folder(tenant, mv.name, number),
                )
            )

        # Runs left with no version: the doomed versions' runs are removed with them.
        used_now = {mv.run_id for mv in versions}
        for run in runs:
            run_id = run.info.run_id
            if run_id in used_now:
                continue
            age = _age_s(run.info.start_time, now_ms)
            expired = (run.info.start_time or 0) <= plan.cutoff_ms
            phrase = _grace_phrase(grace, age, expired=expired)
            item = PlanItem(
                ItemKind.ORPHAN_RUN,
                tenant,
                f"registration run {run_id} with no version",
                f"registration run {phrase}: its upload never got a version"
                if expired
                else f"registration run {phrase}; its upload may still be running",
                age_s=round(age, 1),
                run_id=run_id,
            )
            (plan.remove if expired else plan.keep).append(item)

        live = {(mv.name, str(mv.version)) for mv in versions}
        for name, number in folders:
            if (name, number) in live:
                continue
            plan.remove.append(
                PlanItem(
                    ItemKind.ORPHAN_FOLDER,
                    tenant,
                    f"folder {self._folder(tenant, name, number)}",
                    f"no version {name} v{number} behind it (a version exists before its "
                    "first file, so no grace applies)",
                    model_id=name,
                    version=number,
                    uri=self._folder(tenant, name, number),
                )
            )

        self._plan_empty_models(tenant, doomed, survivors, now_ms, plan)

    def _plan_empty_models(
        self,
        tenant: str,
        doomed: list[ModelVersion],
        survivors: list[ModelVersion],
        now_ms: float,
        plan: CleanupPlan,
    ) -> None:
        """Plan to drop the models whose only versions are the doomed ones.

        Only a model untouched since the cutoff: a registration on another replica
        updates the model as it creates its version, and so keeps it. The check is made
        here, before any delete, because deleting a version touches its model too.
        """
        kept_names = {mv.name for mv in survivors}
        for name in sorted({mv.name for mv in doomed} - kept_names):
            if not is_safe(name):
                continue
            try:
                with translated(f"model {name!r}"):
                    rm = self._client.get_registered_model(name)
            except NotFoundError:
                continue
            age = _age_s(rm.last_updated_timestamp, now_ms)
            expired = (rm.last_updated_timestamp or 0) <= plan.cutoff_ms
            reason = (
                "its only versions are half-registered ones removed above; last changed "
                f"{_grace_phrase(plan.grace_s, age, expired=expired)}"
            )
            item = PlanItem(
                ItemKind.EMPTY_MODEL,
                tenant,
                f"model {name} (and {self._model_folder(tenant, name)})",
                reason if expired else f"{reason}; a registration may be starting",
                age_s=round(age, 1),
                model_id=name,
                uri=self._model_folder(tenant, name),
            )
            (plan.remove if expired else plan.keep).append(item)

    # ----------------------------------------------------------------- execute

    def execute(self, plan: CleanupPlan) -> CleanupReport:
        """Carry out a plan's removals, re-checking each one first.

        Args:
            plan: A plan from :meth:`plan`.

        Returns:
            What was removed, and what was kept: the plan's keeps, plus any removal
            that the re-check spared (with the reason).
        """
        report = CleanupReport(dry_run=False, grace_s=plan.grace_s, kept=list(plan.keep))
        by_tenant: dict[str, list[PlanItem]] = {}
        for item in plan.remove:
            by_tenant.setdefault(item.tenant_id, []).append(item)
        for tenant_id, items in by_tenant.items():
            with self._tenants.scope(tenant_id):
                for item in items:
                    spared = self._execute(item)
                    if spared:
                        report.kept.append(replace(item, reason=f"spared at execution: {spared}"))
                    else:
                        report.removed.append(item)
        return report

    def _execute(self, item: PlanItem) -> str | None:
        """Remove one planned item; return why it was spared instead, if it was."""
        if item.kind is ItemKind.PENDING_VERSION:
            return self._remove_pending(item)
        if item.kind is ItemKind.ORPHAN_RUN:
            if remove_registration_run(self._client, item.run_id):
                return None
            return "a version uses it now, or it is gone already"
        if item.kind is ItemKind.ORPHAN_FOLDER:
            assert item.model_id and item.version and item.uri  # set by the planner
            if self._version(item.model_id, item.version) is not None:
                return f"version {item.model_id} v{item.version} exists now"
            delete_files(item.uri)
            return None
        return self._remove_empty_model(item)

    def _remove_pending(self, item: PlanItem) -> str | None:
        assert item.model_id and item.version and item.uri  # set by the planner
        mv = self._version(item.model_id, item.version)
        if mv is None:
            return "gone already"
        if (mv.tags or {}).get(TAG_REGISTRATION) != REGISTRATION_PENDING:
            return "its registration finished after the plan was made"
        log.warning(
            "removing half-registered version %s/%s v%s", item.tenant_id, mv.name, mv.version
        )
        with translated(), suppress(NotFoundError):
            self._client.delete_model_version(mv.name, mv.version)
        delete_files(item.uri)
        if item.run_id:
            remove_registration_run(self._client, item.run_id)
        return None

    def _remove_empty_model(self, item: PlanItem) -> str | None:
        # Only "still empty" can be re-checked: our own version deletes above have
        # touched the model, so its age no longer tells a registration from us.
        assert item.model_id and item.uri  # set by the planner
        name = item.model_id
        with translated(), suppress(NotFoundError):
            if self._client.search_model_versions(f"name = {quoted(name)}", max_results=1):
                return "it has a version now"
            self._client.delete_registered_model(name)
            delete_files(item.uri)
            return None
        return "gone already"

    # ----------------------------------------------------------------- helpers

    def _folder(self, tenant: str, name: str, number: str) -> str:
        return f"{self._model_folder(tenant, name)}/{number}"

    def _model_folder(self, tenant: str, name: str) -> str:
        return f"{self._tenants.tenant_artifact_root(tenant)}/models/{name}"

    def _version(self, name: str, number: str) -> ModelVersion | None:
        """The version as it is now, or None if it does not exist (or was deleted)."""
        try:
            with translated(f"model {name!r} version {number}"):
                return self._client.get_model_version(name, number)
        except NotFoundError:
            return None

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

    def _registration_runs(self) -> list[Run]:
        """Every live run ``register_model`` made in the bound tenant."""
        experiment_ids = all_experiment_ids(self._client)
        if not experiment_ids:
            return []
        runs: list[Run] = []
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
                    return runs
