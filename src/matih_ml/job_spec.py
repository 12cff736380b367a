"""The training job specification: :func:`validate_job` turns a JSON body into a :class:`JobSpec`.

It is the job API's body and the training domain's spec at once, so it sits in the core
(as ``gate_policy`` does): the contracts, the client and training all import it from here.

A bad body raises a ValidationError naming the field as a dotted path
(``tuning.search_space.lr.loguniform``): a 422 up front, never a Ray job failing later.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Collection, Iterator
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from matih_ml import validation
from matih_ml.errors import MatihError, ValidationError

# strict: in a JSON body "5" is not 5 and true is not 1. allow_inf_nan: json.loads accepts NaN.
_Strict = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

# The only classes a sklearn trainer may name: the runner imports the path, so a free string
# would let a tenant make the service import (and run) any module.
Estimator = Literal[
    "sklearn.linear_model.LogisticRegression",
    "sklearn.ensemble.RandomForestClassifier",
    "sklearn.ensemble.GradientBoostingClassifier",
    "sklearn.linear_model.Ridge",
    "sklearn.ensemble.RandomForestRegressor",
]
REGRESSORS = frozenset({"sklearn.linear_model.Ridge", "sklearn.ensemble.RandomForestRegressor"})
# The metrics the service computes on the holdout (so the only ones a built-in trainer reports).
MetricName = Literal["accuracy", "f1", "precision", "recall", "roc_auc", "rmse", "mae", "r2"]
METRICS = frozenset(get_args(MetricName))
REGRESSION_METRICS = frozenset({"rmse", "mae", "r2"})
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
_NAME_SCHEMA = {"pattern": validation.MODEL_NAME_PATTERN, "maxLength": validation.MODEL_NAME_MAX}
_PYTORCH_FIELDS = ("model", "hidden", "epochs", "lr", "batch_size")

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_ENTRY_POINT_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)
_ENTRY_POINT_SCHEMA = {"pattern": _ENTRY_POINT_RE.pattern}
_FEATURE_REF_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*:[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Pydantic puts the chosen member's tag in a discriminated union's error locations; a
# tenant wrote ``data.path``, not ``data.table.path``.
_UNION_TAGS = {("data",): frozenset({"table", "feast"})}
# A cross-field problem: the dotted path of the field, relative to the model, and a message.
Problem = tuple[str | tuple[str, ...], str]


def _bad(reason: str) -> PydanticCustomError:
    # The reason goes in the context, not the template: it may quote input holding braces.
    return PydanticCustomError("job_spec", "{reason}", {"reason": reason})


def _errors(title: str, problems: list[Problem]) -> PydanticValidationError:
    # Raised in a validator, pydantic prefixes these locations with the validator's own: a
    # cross-field check can name ``tuning.metric`` instead of the whole JobSpec.
    locs = [p if isinstance(p, tuple) else tuple(filter(None, p.split("."))) for p, _ in problems]
    details = [
        InitErrorDetails(type=_bad(m), loc=loc, input=None)
        for loc, (_, m) in zip(locs, problems, strict=True)
    ]
    return PydanticValidationError.from_exception_data(title, details)


class _Spec(BaseModel):
    model_config = _Strict

    def _problems(self) -> Iterator[Problem]:
        """Yield the problems single-field checks cannot see (runs once every field passed)."""
        return iter(())

    @model_validator(mode="after")
    def _cross_checked(self) -> Self:
        problems = list(self._problems())
        if problems:
            raise _errors(type(self).__name__, problems)
        return self


def _scalar(value: Any) -> str | int | float | bool:
    # One check instead of a str|int|float|bool union, whose errors name every member.
    if isinstance(value, str) and len(value) > validation.PARAM_VALUE_MAX:
        raise _bad(f"must be at most {validation.PARAM_VALUE_MAX} characters")
    if isinstance(value, float) and value - value != 0.0:
        raise _bad("must be a finite number")
    if not isinstance(value, str | int | float | bool):
        raise _bad(f"must be a string, number or boolean, got {type(value).__name__}")
    return value


def _text(value: str) -> str:
    if not value.strip() or _CONTROL_RE.search(value):
        raise _bad("must not be blank or contain control characters")
    return value


def _data_path(value: str) -> str:
    # Local paths are resolved by the runner under the tenant's own data root: an absolute
    # path or a '..' segment would reach another tenant's files.
    is_s3 = value.startswith("s3://")
    if "://" in value and not is_s3:
        raise _bad("only s3:// URIs are accepted")
    if ".." in re.split(r"[/\\]", value):
        raise _bad("must not contain '..' path segments")
    if not is_s3 and value.startswith(("/", "\\")):
        raise _bad("must be a path relative to the tenant's data root or an s3:// URI")
    if is_s3 and len(value) < 6:
        raise _bad("s3:// URI must name a bucket")
    if not is_s3 and not value.lower().endswith((".csv", ".parquet")):
        raise _bad("must be a .csv or .parquet file or an s3:// URI")
    return value


def _feature_ref(value: str) -> str:
    if not _FEATURE_REF_RE.match(value):
        raise _bad(f"{value!r} is not a Feast feature reference 'view:feature'")
    return value


def _rule(check: Callable[[str], str]) -> AfterValidator:
    """Apply one of :mod:`matih_ml.validation`'s rules, so the registry and jobs agree."""

    def apply(value: str) -> str:
        try:
            return check(value)
        except MatihError as exc:
            raise _bad(exc.message) from None

    return AfterValidator(apply)


def _tag_key(value: str) -> str:
    validation.tags({value: ""})  # the registry's tag rule: 'matih.' is the service's
    return value


Scalar = Annotated[
    str | int | float | bool,
    PlainValidator(_scalar, json_schema_input_type=str | int | float | bool),
]
Name = Annotated[str, Field(pattern=_IDENT)]
Column = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_text)]
DataPath = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_data_path)]
Fraction = Annotated[float, Field(gt=0, lt=0.9)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's seed range
FeatureRef = Annotated[str, AfterValidator(_feature_ref)]
Layers = Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1, max_length=4)]
TagKey = Annotated[str, _rule(_tag_key)]
TagValue = Annotated[str, Field(max_length=validation.TAG_VALUE_MAX)]
Bounds = Annotated[list[float], Field(min_length=2, max_length=2)]


class TrainerSpec(_Spec):
    """The trainer: an allowed sklearn estimator, the pytorch MLP or an allowed entry point.

    ``params`` are fixed hyperparameters; ``model`` to ``batch_size`` are the MLP's alone.
    """

    kind: Literal["sklearn", "pytorch", "entry_point"]
    estimator: Estimator | None = None
    entry_point: str | None = Field(default=None, json_schema_extra=_ENTRY_POINT_SCHEMA)
    params: dict[Name, Scalar] = Field(default={}, max_length=100)
    model: Literal["mlp"] | None = None
    hidden: Layers | None = None
    epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    lr: Annotated[float, Field(gt=0, le=10)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=65536)] | None = None

    @field_validator("entry_point")
    @classmethod
    def _allowed_entry_point(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _ENTRY_POINT_RE.match(value):
            raise _bad(f"{value!r} is not of the form 'module:function'")
        # Without the operator's allow-list in the context every entry point is refused.
        if value is not None and value not in (info.context or {}).get("entry_points", ()):
            raise _bad(f"entry point {value!r} is not in the operator's allow-list")
        return value

    def _problems(self) -> Iterator[Problem]:
        kinds = {"sklearn": ("estimator",), "pytorch": _PYTORCH_FIELDS}
        wanted = kinds.get(self.kind, ("entry_point",))
        for field in ("estimator", "entry_point", *_PYTORCH_FIELDS):
            given = getattr(self, field) is not None
            if given != (field in wanted):
                verb = "not allowed" if given else "required"
                yield field, f"{verb} for a {self.kind} trainer"
        if self.kind == "pytorch":
            for k in sorted(self.params.keys() & set(wanted)):
                yield ("params", k), f"repeats the trainer field {k!r}"


class TableData(_Spec):
    """A table file (csv or parquet); ``features`` defaults to every column but ``target``."""

    kind: Literal["table"]
    path: DataPath
    target: Column
    features: Annotated[list[Column], Field(min_length=1, max_length=1000)] | None = None
    holdout_fraction: Fraction = 0.2
    seed: Seed = 0

    def _problems(self) -> Iterator[Problem]:
        if self.features is not None and len(set(self.features)) != len(self.features):
            yield "features", "must not repeat a column"
        if self.features is not None and self.target in self.features:
            yield "features", f"must not include the target {self.target!r}"


class FeastData(_Spec):
    """Feast features joined to the entities and ``event_timestamp`` of an entity file."""

    kind: Literal["feast"]
    features: Annotated[list[FeatureRef], Field(min_length=1, max_length=500)]
    entity_path: DataPath
    target: Column
    holdout_fraction: Fraction = 0.2
    seed: Seed = 0


class Resources(_Spec):
    """The Ray workers of each training run (of each trial, when tuning)."""

    num_workers: int = Field(default=1, ge=1, le=64)
    cpus_per_worker: float = Field(default=1, gt=0, le=64)
    use_gpu: bool = False


class SearchDim(_Spec):
    """One hyperparameter's distribution: exactly one key (``randint`` excludes ``hi``)."""

    model_config = ConfigDict(**_Strict, json_schema_extra={"minProperties": 1, "maxProperties": 1})

    uniform: Bounds | None = None
    loguniform: Bounds | None = None
    randint: Annotated[list[int], Field(min_length=2, max_length=2)] | None = None
    choice: Annotated[list[Scalar], Field(min_length=1, max_length=100)] | None = None

    @field_validator("uniform", "loguniform", "randint")
    @classmethod
    def _ordered(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if value is not None and info.field_name == "loguniform" and value[0] <= 0:
            raise _bad("lo must be greater than 0 on a log scale")
        if value is not None and value[0] >= value[1]:
            raise _bad(f"lo must be less than hi, got [{value[0]}, {value[1]}]")
        return value

    def _problems(self) -> Iterator[Problem]:
        if sum(getattr(self, f) is not None for f in type(self).model_fields) != 1:
            yield "", "must give exactly one of uniform, loguniform, randint or choice"


class TuningSpec(_Spec):
    """A Ray Tune search over the trainer's hyperparameters, ranked by ``metric``."""

    search_space: dict[Name, SearchDim] = Field(min_length=1, max_length=20)
    num_samples: int = Field(ge=1, le=1000)
    metric: Annotated[str, _rule(validation.key)]
    mode: Literal["min", "max"]
    scheduler: Literal["asha", "median", "none"] = "asha"
    max_concurrent_trials: Annotated[int, Field(ge=1, le=64)] | None = None
    grace_period: int = Field(default=1, ge=1, le=10000)


class EvaluationSpec(_Spec):
    """The holdout score; ``higher_is_better`` follows from the metric (given, must agree)."""

    primary_metric: MetricName
    higher_is_better: bool | None = None
    min_improvement: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _derive_direction(self) -> Self:
        if self.higher_is_better is None:
            self.higher_is_better = self.primary_metric not in LOWER_IS_BETTER
        return self

    def _problems(self) -> Iterator[Problem]:
        # A flipped direction would promote the worse model.
        if self.higher_is_better == (self.primary_metric in LOWER_IS_BETTER):
            expected = str(self.primary_metric not in LOWER_IS_BETTER).lower()
            yield "higher_is_better", f"must be {expected} for {self.primary_metric}"


# ``register`` is the API's word; it shadows ABCMeta.register on the class, never on instances.
warnings.filterwarnings("ignore", 'Field name "register" in "JobSpec" shadows', UserWarning)


class JobSpec(_Spec):
    """A training job; ``model_name`` and ``tags`` follow the registry's rules."""

    name: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_text)]
    model_name: Annotated[str, _rule(validation.model_name), Field(json_schema_extra=_NAME_SCHEMA)]
    trainer: TrainerSpec
    data: TableData | FeastData = Field(discriminator="kind")
    resources: Resources = Resources()
    tuning: TuningSpec | None = None
    evaluation: EvaluationSpec
    register: bool = True
    target_stage: Literal["development", "staging"] = "staging"
    tags: dict[TagKey, TagValue] = Field(default={}, max_length=100)

    def _problems(self) -> Iterator[Problem]:
        trainer, metric, tuning = self.trainer, self.evaluation.primary_metric, self.tuning
        # Built-in trainers report only the service's metrics; an entry point may report any.
        reported = None if trainer.kind == "entry_point" else METRICS
        if trainer.estimator is not None:
            regressor = trainer.estimator in REGRESSORS
            reported = REGRESSION_METRICS if regressor else METRICS - REGRESSION_METRICS
            if metric not in reported:
                task = "regressor" if regressor else "classifier"
                use = ", ".join(sorted(reported))
                yield "evaluation.primary_metric", f"{metric!r} does not suit a {task}; use {use}"
        if not self.register and "target_stage" in self.model_fields_set:
            yield "target_stage", "only applies when register is true"
        if tuning is None:
            return
        if trainer.kind != "sklearn":
            # Trials of the built-in estimators report rounds that ASHA can stop; the MLP
            # and entry points do not (yet).
            yield "tuning", f"only sklearn trainers can be tuned, not {trainer.kind}"
            return
        if tuning.metric != metric and reported is not None and tuning.metric not in reported:
            yield "tuning.metric", f"{tuning.metric!r} is not a metric the trainer reports"
        elif tuning.metric in METRICS:
            mode = "min" if tuning.metric in LOWER_IS_BETTER else "max"
            if tuning.mode != mode:
                yield "tuning.mode", f"must be {mode!r} for {tuning.metric}"
        for k in sorted(tuning.search_space.keys() & trainer.params.keys()):
            yield ("tuning", "search_space", k), "is fixed in trainer.params; tune it or fix it"


def _dotted(loc: tuple[str | int, ...], error_type: str) -> str:
    parts: list[str | int] = []
    for part in loc:
        if part == "[key]":  # a bad dict key: its own path names it
            continue
        if part in _UNION_TAGS.get(tuple(parts), ()):
            continue
        parts.append(part)
    if error_type in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("kind")
    return ".".join(str(p) for p in parts)


def validate_job(body: Any, *, entry_points: Collection[str] = ()) -> JobSpec:
    """Parse and check a JSON-decoded training job body.

    Args:
        body: The decoded JSON request body.
        entry_points: The ``module:function`` entry points the operator allows; a trainer
            naming any other is refused.

    Returns:
        The job specification (with ``evaluation.higher_is_better`` filled in).

    Raises:
        ValidationError: Naming the first problem; ``details["field"]`` is its dotted path
            and ``details["problems"]`` lists every problem as ``{"field", "message"}``.
    """
    try:
        return JobSpec.model_validate(body, context={"entry_points": frozenset(entry_points)})
    except PydanticValidationError as exc:
        problems = [
            {"field": _dotted(e["loc"], e["type"]), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
    first = problems[0]
    prefix = f"{first['field']}: " if first["field"] else ""
    raise ValidationError(
        f"{prefix}{first['message']}", details={"field": first["field"], "problems": problems}
    )


def job_schema() -> dict[str, Any]:
    """Return the JSON schema of a training job body (for the OpenAPI document)."""
    return JobSpec.model_json_schema()
