"""The gates between stages: what each checks, and the evidence it leaves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matih_ml.registry.metadata import Stage
from matih_ml.registry.policy import Policy
from matih_ml.registry.service import RegistryService


@dataclass
class GateResult:
    """The outcome of one gate on one version."""

    gate: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def staging_gate(
    registry: RegistryService,
    policy: Policy,
    tenant: str,
    model: str,
    version: str,
    production_version: str | None,
) -> GateResult:
    """development → staging: thresholds, no regression against production, loads and predicts."""
    gate = policy.staging
    reasons: list[str] = []
    metrics = registry.version_metrics(tenant, model, version)
    details: dict[str, Any] = {"metrics": metrics}
    for t in gate.required_metrics:
        actual = metrics.get(t.metric)
        if actual is None:
            reasons.append(f"metric {t.metric!r} is required ({t.op} {t.value}) but not logged")
        elif not t.holds(actual):
            reasons.append(f"{t.metric} {actual} is not {t.op} {t.value}")
    if gate.primary_metric:
        candidate = metrics.get(gate.primary_metric)
        details["primary_metric"] = gate.primary_metric
        if candidate is None:
            reasons.append(f"primary metric {gate.primary_metric!r} is not logged")
        elif production_version is not None:
            baseline = registry.version_metrics(tenant, model, production_version).get(
                gate.primary_metric
            )
            details["baseline"] = {"version": production_version, "value": baseline}
            if baseline is not None:
                worse = baseline - candidate if gate.higher_is_better else candidate - baseline
                if worse > gate.max_regression:
                    reasons.append(
                        f"{gate.primary_metric} {candidate} regresses against production "
                        f"v{production_version} ({baseline}) by {worse:.6g}, more than the "
                        f"tolerance {gate.max_regression}"
                    )
    if gate.prediction_check != "off":
        failures = registry.prediction_check(
            tenant, model, version, require_example=gate.prediction_check == "required"
        )
        details["prediction_check"] = "failed" if failures else "passed"
        reasons.extend(failures)
    return GateResult(Stage.STAGING.value, not reasons, reasons, details)


def production_gate(
    policy: Policy,
    evaluations: list[dict[str, Any]],
    approval: dict[str, Any] | None,
) -> GateResult:
    """staging → production: a passed shadow/A-B evaluation and/or a four-eyes approval."""
    gate = policy.production
    reasons: list[str] = []
    details: dict[str, Any] = {}
    if gate.require_evaluation:
        passing = [e for e in evaluations if e["passed"] and e["kind"] in gate.evaluation_kinds]
        if passing:
            details["evaluation"] = passing[-1]
        else:
            kinds = " or ".join(gate.evaluation_kinds)
            reasons.append(f"no passed {kinds} evaluation is recorded for this version")
    if gate.require_approval:
        if approval is None:
            reasons.append("no approved approval request for this version")
        else:
            details["approval"] = approval
    return GateResult(Stage.PRODUCTION.value, not reasons, reasons, details)
