"""Which version a request gets: by stage, alias or number, re-checked cheaply.

A resolution is cached per tenant, model and target. Every stage move, rollback and
deletion takes the tenant's next event sequence number in its own transaction
(:mod:`matih_ml.events.outbox`), so one primary-key read of that number, at most every
``check_s`` seconds per tenant, tells whether any cached resolution may be stale. A
promotion is therefore served within ``check_s`` (0.25 s by default) plus one load, on
every replica, with no restart and no reload per request. In the replica that made the
change, the event log's commit hook drops the tenant's resolutions at once.

A resolution carries the version's stage as our store records it, so that who may load
it (:func:`loadable_by_viewer`) is decided from the same cached answer: a stage target
costs nothing more, a version or alias target one read of the model's stages per miss.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from mlflow import MlflowClient
from sqlalchemy import select

from matih_ml import validation
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.mlflow_errors import translated
from matih_ml.registry.metadata import STAGE_ALIAS, Stage
from matih_ml.registry.service import RegistryService
from matih_ml.store import lifecycle_store
from matih_ml.store.db import Database
from matih_ml.store.models import EventSequenceRow
from matih_ml.tenancy import TenantDirectory

_STAGES = {Stage.PRODUCTION.value, Stage.STAGING.value}
_ALIAS_STAGE = {alias: stage.value for stage, alias in STAGE_ALIAS.items()}
# The stages anyone who may read a model may score; other versions need an editor.
SERVED_STAGES = frozenset(_STAGES)


class WouldBlock(Exception):
    """A non-blocking call would have to read the database or load a model."""


@dataclass(frozen=True)
class Target:
    """What a request asks for: a stage (default production), an alias or a version."""

    kind: str  # "stage", "alias" or "version"
    value: str

    @property
    def label(self) -> str:
        """``production``, ``@champion`` or ``v3``."""
        # Read twice per prediction: no dict of all three built each time.
        if self.kind == "stage":
            return self.value
        return f"@{self.value}" if self.kind == "alias" else f"v{self.value}"

    @classmethod
    def parse(
        cls, stage: str | None = None, alias: str | None = None, version: str | None = None
    ) -> Target:
        """At most one of the three; none means production.

        Raises:
            ValidationError: For two at once, or an unknown stage.
        """
        given = [(k, v) for k, v in (("stage", stage), ("alias", alias), ("version", version)) if v]
        if len(given) > 1:
            raise ValidationError(
                "Give at most one of stage, alias and version.", details={"field": given[1][0]}
            )
        if not given:
            return cls("stage", Stage.PRODUCTION.value)
        kind, value = given[0]
        if kind == "stage" and value not in _STAGES:
            raise ValidationError(
                f"stage must be production or staging, got {value!r}.", details={"field": "stage"}
            )
        if kind == "version":
            value = validation.version(value)
        if kind == "alias":
            value = validation.key(value, "alias")
        return cls(kind, value)


PRODUCTION = Target("stage", Stage.PRODUCTION.value)
STAGING = Target("stage", Stage.STAGING.value)


@dataclass(frozen=True)
class Resolved:
    """A target's version now, with that version's stage as our store records it."""

    version: str
    stage: str


def loadable_by_viewer(target: Target | None, resolved: Resolved | None) -> bool:
    """Whether a caller who may only read may have ``resolved`` loaded and scored.

    A stage target (or none: production, or A/B's staging) names a served version by
    definition. A version or alias target is allowed when the version it names is in
    staging or production now. A version never promoted, or one moved out, runs only for
    editors: loading a model is the riskiest thing the service does, and a version nobody
    vouched for is an editor's work in progress.
    """
    if target is None or target.kind == "stage" or resolved is None:
        return True
    return resolved.stage in SERVED_STAGES


class VersionResolver:
    """Resolves targets to version numbers, with the cheap staleness check above."""

    def __init__(
        self,
        registry: RegistryService,
        tenants: TenantDirectory,
        client: MlflowClient,
        db: Database,
        check_s: float,
    ) -> None:
        self._registry = registry
        self._tenants = tenants
        self._client = client
        self._db = db
        self._check_s = check_s
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # tenant -> (checked at, sequence)
        self._cache: dict[tuple[str, str, Target], Resolved | None] = {}

    def resolve(
        self, tenant_id: str, model: str, target: Target, *, blocking: bool = True
    ) -> str | None:
        """The version ``target`` names now, or None (no version in that stage).

        Args:
            blocking: False to answer only from a fresh cache, raising
                :class:`WouldBlock` where the database would be read.

        Raises:
            NotFoundError: For a model, alias or version this tenant does not have.
        """
        found = self.resolved(tenant_id, model, target, blocking=blocking)
        return None if found is None else found.version

    def resolved(
        self, tenant_id: str, model: str, target: Target, *, blocking: bool = True
    ) -> Resolved | None:
        """Like :meth:`resolve`, with the version's stage (None: no version in that stage)."""
        key = (tenant_id, model, target)
        if not blocking:
            with self._lock:
                seen = self._seen.get(tenant_id)
                if seen is None or time.monotonic() - seen[0] >= self._check_s:
                    raise WouldBlock
                if key not in self._cache:
                    raise WouldBlock
                return self._cache[key]
        self._refresh(tenant_id)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = self._lookup(tenant_id, model, target)
        with self._lock:
            self._cache[key] = found
        return found

    def invalidate(self, tenant_id: str) -> None:
        """Forget a tenant's resolutions now (this process just changed its lifecycle)."""
        with self._lock:
            self._seen.pop(tenant_id, None)
            for key in [k for k in self._cache if k[0] == tenant_id]:
                del self._cache[key]

    def _refresh(self, tenant_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(tenant_id)
            if seen is not None and now - seen[0] < self._check_s:
                return
        with self._db.uow(tenant=tenant_id) as s:
            sequence = s.scalar(select(EventSequenceRow.last))
        sequence = int(sequence or 0)
        with self._lock:
            if seen is None or seen[1] != sequence:
                for key in [k for k in self._cache if k[0] == tenant_id]:
                    del self._cache[key]
            self._seen[tenant_id] = (now, sequence)

    def _lookup(self, tenant_id: str, model: str, target: Target) -> Resolved | None:
        stage_alias = _ALIAS_STAGE.get(target.value) if target.kind == "alias" else None
        if stage_alias is not None:
            # @production and @staging are our store's stages, not MLflow's aliases
            # (a projection of them, which may lag a crash by a reconcile pass).
            return self._lookup(tenant_id, model, Target("stage", stage_alias))
        if target.kind == "version":
            version = self._registry.get_version(tenant_id, model, target.value).version
        else:
            self._registry.require_model(tenant_id, model)
            if target.kind == "alias":
                with self._tenants.scope(tenant_id), translated(f"alias {target.value!r}"):
                    found = self._client.get_model_version_by_alias(model, target.value)
                version = str(found.version)
        with self._db.uow(tenant=tenant_id) as s:
            stages = lifecycle_store.stages(s, tenant_id, model)
        if target.kind == "stage":
            holders = [v for v, stage in stages.items() if stage == target.value]
            return Resolved(str(max(holders)), target.value) if holders else None
        # A version the lifecycle never moved has no row: it is in development (MLflow's
        # mirror is not asked; a tag set through MLflow must not open the door).
        return Resolved(version, stages.get(int(version), Stage.DEVELOPMENT.value))


def no_version(model: str, target: Target) -> NotFoundError:
    """The error for a target with no version (e.g. nothing in production yet)."""
    return NotFoundError(
        f"Model {model!r} has no version in {target.label}.",
        details={"model_id": model, "target": target.label},
    )
