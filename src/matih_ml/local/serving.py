"""Predictions, traffic modes and monitoring, in process (``ServingContract``).

The rules both doors share live here: how many rows a request may hold, which versions
a reader may have scored, how a batch is chunked and pinned to one version. The REST
routes call this door, except the single-request predict route, which keeps its own
path so that small requests on cached models are scored on the event loop (see
``matih_ml.api.routes.serving.predict``); it uses these same rules and service calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from matih_ml.auth.principal import Permission, Principal
from matih_ml.contracts.checks import checked
from matih_ml.contracts.names import EvaluationKindName, TrafficModeName
from matih_ml.contracts.protocols import ServingContract
from matih_ml.contracts.schemas import (
    EvaluationRead,
    EvidenceCreate,
    EvidenceRead,
    MonitoringRead,
    PredictionRead,
    ServingConfigRead,
    ServingConfigWrite,
    TrafficSummaryRead,
)
from matih_ml.errors import ForbiddenError, PayloadTooLargeError, ValidationError
from matih_ml.local._base import Door, implements
from matih_ml.serving.resolver import Target, loadable_by_viewer
from matih_ml.serving.service import EvidenceCriteria, Prediction, PredictionService

__all__ = [
    "CHUNK",
    "MAX_BATCH_RECORDS",
    "MAX_RECORDS",
    "LocalServing",
    "check_rows",
    "require_loadable",
    "target_of",
]

# One request's records; larger inputs go to predict_batch, which scores in chunks.
MAX_RECORDS = 1_000
MAX_BATCH_RECORDS = 100_000
CHUNK = 10_000


def target_of(stage: str | None, alias: str | None, version: str | int | None) -> Target | None:
    """The version asked for, or None: production, unless A/B mode picks staging.

    Raises:
        ValidationError: Two of them at once, an unknown stage, a bad version or alias.
    """
    # None (rather than production) lets A/B mode choose the arm.
    version = None if version is None else str(version)
    return Target.parse(stage, alias, version) if (stage or alias or version) else None


def require_loadable(
    serving: PredictionService,
    who: Principal,
    model_id: str,
    target: Target | None,
    *,
    blocking: bool = True,
) -> None:
    """Refuse a reader who names a version that is neither in staging nor in production.

    Editors may score any version; the stage comes from the resolver's cached answer, so
    a stage target (the hot path) costs nothing here. Another tenant's model was a 404
    before this (the resolver finds nothing), never a 403.

    Raises:
        ForbiddenError: A viewer naming (by number or alias) a development or archived
            version.
        WouldBlock: ``blocking`` is False and the answer is not cached.
    """
    if target is None or target.kind == "stage" or who.can(Permission.WRITE):
        return
    found = serving.resolver.resolved(who.tenant_id, model_id, target, blocking=blocking)
    if not loadable_by_viewer(target, found):
        assert found is not None
        raise ForbiddenError(
            f"Version {found.version} of {model_id!r} is in {found.stage}: scoring a version "
            "that is not in staging or production needs the 'write' permission (an editor).",
            details={
                "permission": Permission.WRITE.value,
                "model_id": model_id,
                "version": found.version,
                "stage": found.stage,
            },
        )


def check_rows(body: Mapping[str, Any], limit: int) -> None:
    """Refuse a body with more than ``limit`` records (or inputs).

    Raises:
        PayloadTooLargeError: Naming the limit.
    """
    rows = body.get("records", body.get("inputs"))
    if isinstance(rows, list) and len(rows) > limit:
        raise PayloadTooLargeError(
            f"At most {limit} records per request; use predict:batch for more.",
            details={"limit": limit},
        )


def _rows(rows: Any) -> Any:
    """Rows as a list, as they would arrive in a JSON body: a numpy array's or a tuple's
    become one; anything else is left for the checks to name."""
    tolist = getattr(rows, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(rows, Sequence) and not isinstance(rows, str | bytes | list):
        return list(rows)
    return rows


def _payload(
    records: Sequence[Mapping[str, Any]] | None, inputs: Sequence[Any] | None
) -> dict[str, Any]:
    # What the route's body would hold: the service refuses none, or both.
    payload: dict[str, Any] = {}
    if records is not None:
        payload["records"] = _rows(records)
    if inputs is not None:
        payload["inputs"] = _rows(inputs)
    return payload


def _read(p: Prediction) -> PredictionRead:
    return PredictionRead(**asdict(p))


@implements(ServingContract)
class LocalServing(Door):
    """Predictions, traffic modes (shadow, A/B), their evidence, and monitoring.

    Scores with the services' one PredictionService (``Services.serving``), the one the
    API's routes use.
    """

    def predict(
        self,
        model_id: str,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
        inputs: Sequence[Any] | None = None,
        stage: str | None = None,
        alias: str | None = None,
        version: str | int | None = None,
    ) -> PredictionRead:
        tenant = self._need(Permission.READ)
        serving = self._s.serving
        target = target_of(stage, alias, version)
        # The route's thread-pool path, in its order: who may load it, then the rows.
        require_loadable(serving, self._who, model_id, target)
        payload = _payload(records, inputs)
        check_rows(payload, MAX_RECORDS)
        return _read(serving.predict(tenant, model_id, payload, target))

    def predict_batch(
        self,
        model_id: str,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
        inputs: Sequence[Any] | None = None,
        stage: str | None = None,
        alias: str | None = None,
        version: str | int | None = None,
    ) -> PredictionRead:
        tenant = self._need(Permission.READ)
        serving = self._s.serving
        target = target_of(stage, alias, version)
        # Checked once, for the target asked for: the pinned chunks after the first are
        # the version that target named, even if a promotion archives it meanwhile.
        require_loadable(serving, self._who, model_id, target)
        payload = _payload(records, inputs)
        check_rows(payload, MAX_BATCH_RECORDS)
        field = "inputs" if inputs is not None else "records"
        rows = payload.get(field)
        if not isinstance(rows, list) or not rows:
            raise ValidationError(f"{field} must be a non-empty list.", details={"field": field})
        # The first chunk fixes the version, so a promotion mid-batch cannot mix two.
        first = serving.predict(tenant, model_id, {field: rows[:CHUNK]}, target)
        pinned = Target("version", first.version)
        out, latency = list(first.predictions), first.latency_ms
        for i in range(CHUNK, len(rows), CHUNK):
            part = serving.predict(tenant, model_id, {field: rows[i : i + CHUNK]}, pinned)
            out.extend(part.predictions)
            latency += part.latency_ms
        return PredictionRead(
            model_id=model_id,
            version=first.version,
            target=first.target,
            predictions=out,
            latency_ms=latency,
        )

    def get_config(self, model_id: str) -> ServingConfigRead:
        tenant = self._need(Permission.READ)
        self._s.registry.require_model(tenant, model_id)
        cfg = self._s.serving.traffic.config(tenant, model_id)
        return ServingConfigRead(model_id=model_id, **asdict(cfg))

    def set_config(
        self, model_id: str, mode: TrafficModeName, *, ab_share: float = 0.0
    ) -> ServingConfigRead:
        tenant = self._need(Permission.WRITE)
        # The route's body type checks the values (a mode it knows, a share in [0, 1]).
        wanted = checked(ServingConfigWrite, mode=mode, ab_share=ab_share)
        self._s.registry.require_model(tenant, model_id)
        cfg = self._s.serving.traffic.set_config(
            tenant, model_id, wanted.mode, wanted.ab_share, self._who.subject
        )
        return ServingConfigRead(model_id=model_id, **asdict(cfg))

    def summary(self, model_id: str, *, mode: EvaluationKindName = "shadow") -> TrafficSummaryRead:
        tenant = self._need(Permission.READ)
        if mode not in ("shadow", "ab"):
            raise ValidationError(
                f"mode must be shadow or ab, got {mode!r}.", details={"field": "mode"}
            )
        return TrafficSummaryRead(**asdict(self._s.serving.summary(tenant, model_id, mode)))

    def record_evidence(self, model_id: str, evidence: EvidenceCreate) -> EvidenceRead:
        tenant = self._need(Permission.WRITE)
        criteria = EvidenceCriteria(
            evidence.min_samples,
            evidence.min_agreement,
            evidence.max_error_rate,
            evidence.max_latency_ratio,
            evidence.latency_slack_ms,
        )
        summary, evaluation, reasons = self._s.serving.record_evidence(
            tenant, model_id, evidence.kind, criteria, self._who.subject
        )
        return EvidenceRead(
            summary=TrafficSummaryRead(**asdict(summary)),
            evaluation=EvaluationRead(**evaluation.__dict__),
            reasons=reasons,
        )

    def monitoring(self, model_id: str, *, version: str | int | None = None) -> MonitoringRead:
        tenant = self._need(Permission.READ)
        serving = self._s.serving
        asked = None if version is None else str(version)
        # The figures load the version (its reference profile): the same rule as predict.
        target = Target.parse(version=asked) if asked else None
        require_loadable(serving, self._who, model_id, target)
        f = serving.monitoring(tenant, model_id, asked)
        resolved = asked or serving.resolver.resolve(tenant, model_id, Target.parse())
        return MonitoringRead(model_id=model_id, version=str(resolved), **asdict(f))
