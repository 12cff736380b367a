"""The stage lifecycle: moves, gates, approvals, evaluations, history and rollback.

The lifecycle's own tables are the source of truth for stages; MLflow's version
tag, stage field and aliases are a projection of them, written after the move commits
(:mod:`matih_ml.registry.projection`). Every move of a model takes that model's
database lock first, so at most one version is in production at any time, across
threads and replicas.

The staging gate loads and scores the version, which can take seconds (a sandboxed
model), so it runs before the lock is taken; on SQLite the lock is the database's write
lock, and a model loading under it would hold up every move of every model. Under the
lock the move checks that what the gate looked at still holds (:class:`_StagingCheck`).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from matih_ml import validation
from matih_ml.crashpoints import crash_point
from matih_ml.errors import (
    ConflictError,
    GateFailedError,
    ValidationError,
)
from matih_ml.events.catalog import EventType
from matih_ml.keyed_locks import KeyedLocks
from matih_ml.registry import lifecycle_events
from matih_ml.registry.gates import GateResult, production_gate, staging_gate
from matih_ml.registry.lifecycle_reads import Move, TransitionResult, move_of
from matih_ml.registry.lifecycle_registration import LifecycleRegistration
from matih_ml.registry.metadata import (
    Stage,
)
from matih_ml.registry.policy import Policy, PolicyStore
from matih_ml.registry.projection import StageProjector, request_projection
from matih_ml.registry.provenance import Provenance
from matih_ml.registry.reviews import ReviewService
from matih_ml.registry.service import RegistryService
from matih_ml.registry.stages import allowed_targets, parse_stage
from matih_ml.store import lifecycle_store as store
from matih_ml.store.db import Database


@dataclass(frozen=True)
class _StagingCheck:
    """What a move saw before the lock, and the staging gate run on it (if one ran).

    The gate's outcome holds only while the version is still in development, the
    policy's staging rules are the same, and (when the gate compared the candidate
    with production) the same version is in production.
    """

    seen: Stage
    policy: Policy | None = None
    baseline: str | None = None
    result: GateResult | None = None


class LifecycleService(LifecycleRegistration):
    """Stage moves with enforced gates, four-eyes approvals, history and rollback.

    Args:
        registry: The MLflow-side registry (versions, metrics).
        db: The service database (locks, stages, history, approvals, evidence).
        projector: Shows the stages on MLflow after each move commits.
        landing_stage: Where every new version lands (``MATIH_REGISTER_STAGE``).
        provenance: Checks a version's signature before a move into staging or
            production (:mod:`matih_ml.registry.provenance`).
    """

    def __init__(
        self,
        registry: RegistryService,
        db: Database,
        projector: StageProjector,
        *,
        landing_stage: str = "development",
        provenance: Provenance | None = None,
    ) -> None:
        self._registry = registry
        # Checks a version's files against its signature before it moves up (None: no check).
        self._provenance = provenance
        # Where every new version lands (MATIH_REGISTER_STAGE), whichever door registered it.
        self.landing_stage = landing_stage
        self._db = db
        self._projector = projector
        self._events = registry.events
        self.policies = PolicyStore(db)
        self.reviews = ReviewService(registry, db, self._current_stage)
        self._registering = KeyedLocks()  # see LifecycleRegistration

    # ------------------------------------------------------------------ moves

    def transition_stage(
        self,
        tenant_id: str,
        model_id: str,
        version: str | int,
        target_stage: str,
        *,
        actor: str = "",
        reason: str = "",
        force: bool = False,
    ) -> TransitionResult:
        """Move a version to ``target_stage`` through the gates.

        Args:
            tenant_id: The tenant.
            model_id: The model.
            version: The version to move.
            target_stage: development, staging, production or archived.
            actor: Who asks (recorded in the history).
            reason: Why (required when forcing).
            force: Skip the gates (admins only: the caller checks the role). The
                history marks the move as forced.

        Raises:
            ValidationError: For a bad stage, or a forced move with no reason.
            NotFoundError: For an unknown model or version.
            ConflictError: For a move the stage machine does not allow.
            GateFailedError: When a gate refuses; ``details['reasons']`` says why, the
                outcome is stored as evidence, and nothing else changes.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        target = parse_stage(target_stage)
        if force and not reason.strip():
            raise ValidationError(
                "A forced move needs a written reason.", details={"field": "reason"}
            )
        self._registry.get_version(tenant_id, name, number)  # 404s before any lock
        if self._provenance is not None and target in (Stage.STAGING, Stage.PRODUCTION):
            # Before any gate loads it, outside the lock (it downloads the files), and
            # not even a forced move skips it: a version whose files changed since they
            # were signed never moves up.
            self._provenance.require_promotable(tenant_id, name, number)
        # Loading and scoring the model happens here, outside the lock.
        early = self._staging_check(tenant_id, name, number, target)
        gate_failure: GateResult | None = None
        with self._db.uow() as s:
            store.lock_model(s, tenant_id, name)
            current = self._current_stage(s, tenant_id, name, number)
            if current is target:
                return TransitionResult(self._registry.require_model(tenant_id, name))
            allowed = allowed_targets(current)
            if target not in allowed:
                raise ConflictError(
                    f"Version {number} of {name!r} is in {current.value}; it can move to "
                    f"{', '.join(sorted(t.value for t in allowed)) or 'nothing'}, "
                    f"not {target.value}.",
                    details={"from": current.value, "to": target.value},
                )
            producing = self._in_stage(s, tenant_id, name, Stage.PRODUCTION)
            result = self._check_gate(s, tenant_id, name, number, current, target, producing, early)
            if result is not None:
                store.record_gate(
                    s,
                    tenant_id,
                    name,
                    int(number),
                    result.gate,
                    result.passed,
                    result.reasons,
                    result.details,
                )
                if not result.passed and not force:
                    gate_failure = result
            if gate_failure is None:
                moves = self._apply(
                    s,
                    tenant_id,
                    name,
                    number,
                    current,
                    target,
                    producing,
                    actor=actor,
                    reason=reason,
                    forced=force and result is not None and not result.passed,
                    evidence={"gate": result.__dict__} if result else {},
                )
                crash_point("promote.before_commit")
        if gate_failure is not None:
            # The evidence was committed above; the move itself was not made.
            raise GateFailedError(
                f"The {gate_failure.gate} gate refused version {number} of {name!r}: "
                + "; ".join(gate_failure.reasons),
                details={
                    "gate": gate_failure.gate,
                    "reasons": gate_failure.reasons,
                    "evidence": gate_failure.details,
                },
            )
        self._project(tenant_id, name)
        return TransitionResult(self._registry.require_model(tenant_id, name), moves)

    def _project(self, tenant_id: str, name: str) -> None:
        """Show the committed move on MLflow now; if that fails, the request recorded
        with the move stays for the projector's next pass."""
        crash_point("promote.after_commit")
        self._projector.project(tenant_id, name)

    def rollback(
        self, tenant_id: str, model_id: str, *, actor: str = "", reason: str = ""
    ) -> TransitionResult:
        """Put the previous production version back, and move the current one to development.

        Raises:
            NotFoundError: For an unknown model.
            ConflictError: If nothing is in production, or no earlier production
                version still exists.
        """
        name = validation.model_name(model_id)
        self._registry.require_model(tenant_id, name)
        live = {v.version for v in self._registry.list_versions(tenant_id, name)}
        checked: str | None = None
        if self._provenance is not None:
            # A rollback moves a version into production: its files are checked against
            # their signature as a promotion's are, before the lock (the check downloads).
            with self._db.uow() as s:
                _, checked = self._rollback_pair(s, tenant_id, name, live)
            self._provenance.require_promotable(tenant_id, name, checked)
        with self._db.uow() as s:
            store.lock_model(s, tenant_id, name)
            current, previous = self._rollback_pair(s, tenant_id, name, live)
            if checked is not None and previous != checked:
                raise ConflictError(
                    f"Model {name!r}'s production history changed during the rollback; try again.",
                    details={"checked": checked, "now": previous},
                )
            why = reason or f"rollback from v{current} to v{previous}"
            evidence = {"rollback": {"from": current, "to": previous}}
            moves = [
                self._record(
                    s,
                    tenant_id,
                    name,
                    current,
                    Stage.PRODUCTION,
                    Stage.DEVELOPMENT,
                    actor,
                    why,
                    evidence,
                    False,
                ),
                self._record(
                    s,
                    tenant_id,
                    name,
                    previous,
                    self._current_stage(s, tenant_id, name, previous),
                    Stage.PRODUCTION,
                    actor,
                    why,
                    evidence,
                    False,
                    current,
                ),
            ]
            crash_point("promote.before_commit")
        self._project(tenant_id, name)
        return TransitionResult(self._registry.require_model(tenant_id, name), moves)

    def _rollback_pair(
        self, s: Session, tenant_id: str, name: str, live: set[str]
    ) -> tuple[str, str]:
        """The version in production and the one a rollback puts back.

        Raises:
            ConflictError: If nothing is in production, or no earlier production
                version still exists.
        """
        producing = self._in_stage(s, tenant_id, name, Stage.PRODUCTION)
        if not producing:
            raise ConflictError(f"Model {name!r} has no version in production to roll back.")
        current = producing[0]
        previous = next(
            (
                str(row.version)
                for row in reversed(store.history(s, tenant_id, name))
                if row.to_stage == Stage.PRODUCTION.value
                and str(row.version) != current
                and str(row.version) in live
            ),
            None,
        )
        if previous is None:
            raise ConflictError(
                f"Model {name!r} has no earlier production version to roll back to.",
                details={"current": current},
            )
        return current, previous

    def delete_version(
        self, tenant_id: str, model_id: str, version: str | int, *, actor: str = ""
    ) -> None:
        """Delete a development, staging or archived version, under the model's lock.

        Publishes ``MODEL_VERSION_DELETED``.

        Raises:
            NotFoundError: For an unknown model or version.
            ConflictError: If the version is in production.
        """
        name = validation.model_name(model_id)
        number = validation.version(version)
        self._registry.get_version(tenant_id, name, number)
        data = {"model": name, "version": number, "actor": actor}
        with (
            self._events.pending(tenant_id, EventType.MODEL_VERSION_DELETED, name, data),
            self._db.uow() as s,
        ):
            store.lock_model(s, tenant_id, name)
            if self._current_stage(s, tenant_id, name, number) is Stage.PRODUCTION:
                raise ConflictError(
                    f"Version {number} of {name!r} is in production and cannot be deleted; "
                    "promote or roll back to another version first.",
                    details={"model_id": name, "version": number},
                )
            self._registry.delete_version(tenant_id, name, number)
            store.forget_versions(s, tenant_id, name, [int(number)])

    def delete_model(self, tenant_id: str, model_id: str, *, actor: str = "") -> None:
        """Delete a model with no version in production, under the model's lock.

        Publishes ``MODEL_VERSION_DELETED`` for each of its versions.

        Raises:
            NotFoundError: For an unknown model.
            ConflictError: If one of its versions is in production.
        """
        name = validation.model_name(model_id)
        versions = self._registry.require_model(tenant_id, name).versions
        with ExitStack() as intents:
            for number in versions:
                data = {"model": name, "version": number, "actor": actor}
                intents.enter_context(
                    self._events.pending(tenant_id, EventType.MODEL_VERSION_DELETED, name, data)
                )
            self._delete_model_locked(tenant_id, name)

    def _delete_model_locked(self, tenant_id: str, name: str) -> None:
        with self._db.uow() as s:
            store.lock_model(s, tenant_id, name)
            serving = self._in_stage(s, tenant_id, name, Stage.PRODUCTION)
            if serving:
                raise ConflictError(
                    f"Model {name!r} has version {serving[0]} in production; move it out of "
                    "production (or roll back) before deleting the model.",
                    details={"model_id": name, "version": serving[0]},
                )
            self._registry.delete_model(tenant_id, name)
            # No stale stages for a model re-created under the same name.
            store.forget_versions(s, tenant_id, name, None)

    # ---------------------------------------------------------------- helpers

    def _staging_check(
        self, tenant_id: str, name: str, number: str, target: Stage
    ) -> _StagingCheck | None:
        """Run the staging gate, before the lock, if the move looks like it needs it.

        The gate downloads, loads and scores the version; holding the model's lock
        (on SQLite, the database's) for that would hold up every other move. Only what
        is read here is trusted under the lock, after :meth:`_staged_result` checks it.
        """
        if target is not Stage.STAGING:
            return None
        with self._db.uow() as s:
            seen = self._current_stage(s, tenant_id, name, number)
            producing = self._in_stage(s, tenant_id, name, Stage.PRODUCTION)
        if seen is not Stage.DEVELOPMENT:
            return _StagingCheck(seen)  # nothing to gate; under the lock the move says why
        policy: Policy = self.policies.effective(tenant_id, name)[0]
        baseline = next((v for v in producing if v != number), None)
        result = staging_gate(self._registry, policy, tenant_id, name, number, baseline)
        return _StagingCheck(seen, policy, baseline, result)

    @staticmethod
    def _staged_result(
        early: _StagingCheck | None,
        policy: Policy,
        name: str,
        number: str,
        baseline: str | None,
    ) -> GateResult:
        """The staging gate's outcome from before the lock, if it still holds now (the
        version is in development, under the lock).

        Raises:
            ConflictError: If the version, the policy or (for a gate that compared the
                candidate with production) the production version changed since the
                gate ran: the move is asked again, and runs a fresh gate.
        """
        again = "; ask for the move again."
        if early is None or early.result is None or early.policy is None:
            seen = early.seen.value if early is not None else "another stage"
            raise ConflictError(
                f"Version {number} of {name!r} moved from {seen} to development while "
                f"this move was being checked{again}",
                details={"from": Stage.DEVELOPMENT.value, "to": Stage.STAGING.value},
            )
        gated = (early.policy.staging, early.policy.code_models)
        if gated != (policy.staging, policy.code_models):
            raise ConflictError(
                f"The promotion policy of {name!r} changed while the staging gate checked "
                f"version {number}{again}",
                details={"from": Stage.DEVELOPMENT.value, "to": Stage.STAGING.value},
            )
        if policy.staging.primary_metric and baseline != early.baseline:
            raise ConflictError(
                f"The production version of {name!r} changed (from "
                f"{early.baseline or 'none'} to {baseline or 'none'}) while the staging "
                f"gate compared version {number} with it{again}",
                details={
                    "from": Stage.DEVELOPMENT.value,
                    "to": Stage.STAGING.value,
                    "production": {"checked": early.baseline, "now": baseline},
                },
            )
        return early.result

    def _check_gate(
        self,
        s: Session,
        tenant_id: str,
        name: str,
        number: str,
        current: Stage,
        target: Stage,
        producing: list[str],
        early: _StagingCheck | None,
    ) -> GateResult | None:
        policy: Policy = self.policies.effective(tenant_id, name)[0]
        if current is Stage.DEVELOPMENT and target is Stage.STAGING:
            baseline = next((v for v in producing if v != number), None)
            return self._staged_result(early, policy, name, number, baseline)
        if current is Stage.STAGING and target is Stage.PRODUCTION:
            evaluations = [
                {"id": e.id, "kind": e.kind, "passed": e.passed, "metrics": e.metrics}
                for e in store.evaluations(s, tenant_id, name, int(number))
            ]
            approval = store.usable_approval(s, tenant_id, name, int(number))
            return production_gate(
                policy,
                evaluations,
                {
                    "id": approval.id,
                    "approved_by": approval.decided_by,
                    "requested_by": approval.requested_by,
                }
                if approval
                else None,
            )
        return None

    def _apply(
        self,
        s: Session,
        tenant_id: str,
        name: str,
        number: str,
        current: Stage,
        target: Stage,
        producing: list[str],
        *,
        actor: str,
        reason: str,
        forced: bool,
        evidence: dict[str, Any],
    ) -> list[Move]:
        moves = []
        if target is Stage.PRODUCTION:
            for old in producing:
                if old != number:
                    moves.append(
                        self._record(
                            s,
                            tenant_id,
                            name,
                            old,
                            Stage.PRODUCTION,
                            Stage.ARCHIVED,
                            actor,
                            f"replaced in production by v{number}",
                            {"replaced_by": number},
                            False,
                        )
                    )
            approval = store.usable_approval(s, tenant_id, name, int(number))
            if approval is not None:
                approval.status = "applied"
        replaced = next((v for v in producing if v != number), None)
        moves.append(
            self._record(
                s,
                tenant_id,
                name,
                number,
                current,
                target,
                actor,
                reason,
                evidence,
                forced,
                replaced if target is Stage.PRODUCTION else None,
            )
        )
        return moves

    def _record(
        self,
        s: Session,
        tenant_id: str,
        name: str,
        number: str,
        from_stage: Stage,
        to_stage: Stage,
        actor: str,
        reason: str,
        evidence: dict[str, Any],
        forced: bool,
        replaced: str | None = None,
    ) -> Move:
        """One move: the store's stage, history, events and a projection request, inside
        the lock (so they commit together, or not at all). MLflow is not written here:
        the caller projects after the commit."""
        store.set_stage(s, tenant_id, name, int(number), to_stage.value)
        row = store.append_history(
            s,
            tenant_id,
            name,
            int(number),
            from_stage.value,
            to_stage.value,
            actor=actor,
            reason=reason,
            evidence=evidence,
            forced=forced,
        )
        lifecycle_events.stage_changed(
            self._events,
            s,
            tenant_id,
            name,
            number,
            from_stage,
            to_stage,
            actor=actor,
            reason=reason,
            forced=forced,
            evidence=evidence,
            replaced=replaced,
        )
        request_projection(s, tenant_id, name)
        return move_of(row)
