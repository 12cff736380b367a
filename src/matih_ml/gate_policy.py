"""The promotion policy's body: what each gate requires.

One definition, in the core layer, so that both the registry (which stores and applies
policies) and the API's wire types and client (``matih_ml.contracts.policy``) use the
same classes without the client importing the registry.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


# json.loads reads NaN and Infinity: a NaN threshold fails every comparison, and JSON
# cannot echo it back (it came out as null), so non-finite numbers are refused.
_Config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MetricThreshold(BaseModel):
    """``metric op value``, e.g. ``accuracy >= 0.9``."""

    model_config = _Config
    metric: str = Field(min_length=1, max_length=250)
    op: Literal[">=", ">", "<=", "<"] = ">="
    value: float

    def holds(self, actual: float) -> bool:
        """Whether ``actual`` meets the threshold."""
        return _OPS[self.op](actual, self.value)


class StagingGate(BaseModel):
    """development → staging: the validation policy."""

    model_config = _Config
    required_metrics: list[MetricThreshold] = Field(default=[], max_length=100)
    primary_metric: str | None = Field(
        default=None,
        max_length=250,
        description="Compared with the current production version's value.",
    )
    higher_is_better: bool = True
    max_regression: float = Field(
        default=0.0, ge=0, description="How much worse than production the candidate may be."
    )
    prediction_check: Literal["required", "if_example", "off"] = Field(
        default="if_example",
        description="Load the model and predict on its stored input example: 'required' fails "
        "a version with no example; 'if_example' only loads such a version.",
    )


class ProductionGate(BaseModel):
    """staging → production: evaluation evidence and/or a four-eyes approval."""

    model_config = _Config
    require_evaluation: bool = False
    evaluation_kinds: list[Literal["shadow", "ab"]] = ["shadow", "ab"]
    require_approval: bool = True


class Policy(BaseModel):
    """A promotion policy. The default asks for a loadable model before staging and an
    approval before production."""

    model_config = _Config
    staging: StagingGate = StagingGate()
    production: ProductionGate = ProductionGate()
    protected_aliases: list[str] = Field(
        default=[],
        max_length=100,
        description="Aliases (besides staging and production, which always follow the "
        "lifecycle) that no client may set or remove through MLflow's API.",
    )
    code_models: Literal["sandbox", "refuse"] = Field(
        default="sandbox",
        description="Models that carry code (pickle, cloudpickle, a PythonModel, a "
        "loader_module): 'sandbox' loads them only in the tenant's sandbox; 'refuse' "
        "refuses to register or load them.",
    )
