"""The promotion policy's body, as the API's ``/policy`` routes send it (defined once, in
:mod:`matih_ml.gate_policy`, which the registry uses too)."""

from matih_ml.gate_policy import MetricThreshold, Policy, ProductionGate, StagingGate

__all__ = ["MetricThreshold", "Policy", "ProductionGate", "StagingGate"]
