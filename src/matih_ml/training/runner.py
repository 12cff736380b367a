"""Run a training job: read the table, tune on a local Ray, refit, beat production, register.

:func:`run_job` is the one entry point. Only sklearn trainers on table data run for now.

Trials run in Ray worker processes with plain data (numpy arrays and a dict of settings);
they hold no MLflow client and no tenant scope, so their runs are logged from the driver
once Tune's results are back, nested under the job's parent run.
"""

from __future__ import annotations

import importlib
import inspect
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

from matih_ml.errors import GateFailedError, ValidationError
from matih_ml.services import Services
from matih_ml.store import lifecycle_store
from matih_ml.tracking.runs import MetricPoint
from matih_ml.training.spec import REGRESSORS, JobSpec, SearchDim

ROUNDS = 5  # report rounds per trial: what ASHA and the median rule can stop between
_GROWS_TREES = frozenset(
    {
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.RandomForestRegressor",
    }
)
_DEFAULT_ESTIMATORS = 100
_DEFAULT_MAX_ITER = 100
_VALIDATION_FRACTION = 0.2  # of the train split, for trials: the holdout stays unseen
_EXAMPLE_ROWS = 200
_PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class TrialResult:
    """One Tune trial as the job saw it.

    Attributes:
        config: The sampled hyperparameters.
        metric: The tuning metric at the trial's last round (None if it failed first).
        iterations: How many rounds it reported.
        early_stopped: True when the scheduler stopped it before its last round.
        error: The trial's error, if it failed.
        run_id: Its run, nested under the job's parent run.
    """

    config: dict[str, Any]
    metric: float | None
    iterations: int
    early_stopped: bool
    error: str | None = None
    run_id: str | None = None


@dataclass
class JobResult:
    """What a job did.

    Attributes:
        status: ``registered``, ``not_registered`` or ``failed``.
        reason: One line saying why, for a person.
        metric: The primary metric's name.
        value: The new model's primary metric on the holdout.
        baseline_value: The production version's value on the same holdout, if any.
        baseline_version: The production version compared against, if any.
        registered_version: The new version, if registered.
        stage: The new version's stage after the job (``development`` if a gate refused).
        gate_reasons: Why a lifecycle gate refused the move to ``target_stage``.
        parent_run_id: The job's run.
        params: The refitted model's hyperparameters.
        trials: Every Tune trial (empty without tuning).
    """

    status: str
    reason: str
    metric: str
    value: float | None = None
    baseline_value: float | None = None
    baseline_version: str | None = None
    registered_version: str | None = None
    stage: str | None = None
    gate_reasons: list[str] = field(default_factory=list)
    parent_run_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    trials: list[TrialResult] = field(default_factory=list)


# ----------------------------------------------------------------------- estimators


def _estimator(path: str, params: dict[str, Any], seed: int) -> Any:
    # The path is one of the spec's allow-listed Literal values, never free text.
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    params = dict(params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", seed)  # the same job, the same model
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValidationError(
            f"trainer.params: {exc}", details={"field": "trainer.params"}
        ) from None


def _score(metric: str, model: Any, x: Any, y: np.ndarray) -> float:
    """The metric of ``model`` on (x, y); classification scores average over classes
    (macro) unless there are two, where the second class is the positive one."""
    if metric in ("rmse", "mae", "r2"):
        pred = np.asarray(model.predict(x), dtype=float)
        if metric == "rmse":
            return float(math.sqrt(skm.mean_squared_error(y, pred)))
        return float(skm.mean_absolute_error(y, pred) if metric == "mae" else skm.r2_score(y, pred))
    classes = getattr(model, "classes_", None)
    if classes is None:
        classes = np.unique(y)
    binary = len(classes) == 2
    if metric == "roc_auc":
        if not hasattr(model, "predict_proba"):
            raise ValidationError("roc_auc needs a model with predict_proba.")
        proba = model.predict_proba(x)
        if binary:
            return float(skm.roc_auc_score(y, proba[:, 1]))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    pred = model.predict(x)
    if metric == "accuracy":
        return float(skm.accuracy_score(y, pred))
    scorer = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
    kwargs: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro"}
    )
    return float(scorer[metric](y, pred, zero_division=0, **kwargs))


def _round_params(path: str, params: dict[str, Any], step: int) -> dict[str, Any]:
    """The params of round ``step`` (1..ROUNDS): a growing share of the trees, or of
    the iterations, so an early round is a cheap look at the final model."""
    if path in _GROWS_TREES:
        total = int(params.get("n_estimators", _DEFAULT_ESTIMATORS))
        return {**params, "n_estimators": max(1, math.ceil(total * step / ROUNDS))}
    total = int(params.get("max_iter", _DEFAULT_MAX_ITER))
    return {**params, "max_iter": max(1, math.ceil(total * step / ROUNDS))}


def _trial(
    config: dict[str, Any],
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    task: dict[str, Any],
) -> None:
    """A Tune trainable (runs in a Ray worker): one report per round."""
    from ray import tune  # imported here: the driver may import this module without Ray

    path = task["estimator"]
    params = {**task["params"], **config}
    model = None
    for step in range(1, ROUNDS + 1):
        round_params = _round_params(path, params, step)
        with warnings.catch_warnings():
            # A short round of LogisticRegression does not converge: that is the point.
            warnings.simplefilter("ignore")
            if path in _GROWS_TREES and model is not None:
                # warm_start adds the new trees to the fitted ones instead of refitting.
                model.set_params(n_estimators=round_params["n_estimators"])
            else:
                model = _estimator(path, round_params, task["seed"])
                if path in _GROWS_TREES:
                    model.set_params(warm_start=True)
            model.fit(x_fit, y_fit)
        tune.report({task["metric"]: _score(task["metric"], model, x_val, y_val)})


# --------------------------------------------------------------------------- data


def _read_table(spec: JobSpec, data_root: Path) -> tuple[pd.DataFrame, pd.Series]:
    data = spec.data
    if data.kind != "table":
        raise ValidationError("data.kind: not supported yet", details={"field": "data.kind"})
    if data.path.startswith("s3://"):
        raise ValidationError(
            "data.path: s3:// tables are not supported yet; use a file under the data root",
            details={"field": "data.path"},
        )
    root = data_root.resolve()
    path = (root / data.path).resolve()
    # The spec refuses '..' and absolute paths; a symlink could still lead out.
    if not path.is_relative_to(root):
        raise ValidationError("data.path: leaves the data root", details={"field": "data.path"})
    if not path.is_file():
        raise ValidationError(f"data.path: {data.path!r} not found", details={"field": "data.path"})
    frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    features = data.features or [c for c in frame.columns if c != data.target]
    missing = [c for c in [data.target, *features] if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"data: column {missing[0]!r} is not in the table", details={"field": "data.features"}
        )
    x = frame[features]
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(x[c])]
    if bad:
        raise ValidationError(
            f"data.features: column {bad[0]!r} is not numeric", details={"field": "data.features"}
        )
    if x.isna().any().any() or frame[data.target].isna().any():
        raise ValidationError("data: the table has missing values", details={"field": "data.path"})
    if len(frame) < 10:
        raise ValidationError("data: the table has fewer than 10 rows", details={"field": "data"})
    return x.astype(np.float64), frame[data.target]


def _split(
    x: pd.DataFrame, y: pd.Series | np.ndarray, fraction: float, seed: int, classifier: bool
) -> list[Any]:
    try:
        return train_test_split(
            x, y, test_size=fraction, random_state=seed, stratify=y if classifier else None
        )
    except ValueError as exc:  # e.g. a class with one row cannot be stratified
        raise ValidationError(
            f"data: cannot split the table: {exc}", details={"field": "data"}
        ) from None


# ------------------------------------------------------------------------- tuning


def _distribution(dim: SearchDim) -> Any:
    from ray import tune

    if dim.uniform is not None:
        return tune.uniform(*dim.uniform)
    if dim.loguniform is not None:
        return tune.loguniform(*dim.loguniform)
    if dim.randint is not None:
        return tune.randint(*dim.randint)  # excludes hi, as the spec says
    assert dim.choice is not None
    return tune.choice(dim.choice)


def _ensure_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    target = address or "local"
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if target == "local":
        options["num_cpus"] = 2  # the service's host is shared: do not take every core
    ray.init(address=target, **options)


def _tune(spec: JobSpec, x_train: pd.DataFrame, y_train: np.ndarray, classifier: bool) -> list[Any]:
    """Run the search; return Tune's results (one per trial)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
    from ray.tune.search.basic_variant import BasicVariantGenerator

    tuning = spec.tuning
    assert tuning is not None and spec.trainer.estimator is not None
    x_fit, x_val, y_fit, y_val = _split(
        x_train, y_train, _VALIDATION_FRACTION, spec.data.seed, classifier
    )
    task = {
        "estimator": spec.trainer.estimator,
        "params": dict(spec.trainer.params),
        "metric": tuning.metric,
        "seed": spec.data.seed,
    }
    trainable = tune.with_parameters(
        _trial,
        x_fit=x_fit.to_numpy(),
        y_fit=np.asarray(y_fit),
        x_val=x_val.to_numpy(),
        y_val=np.asarray(y_val),
        task=task,
    )
    trainable = tune.with_resources(trainable, {"cpu": spec.resources.cpus_per_worker})
    if tuning.scheduler == "asha":
        scheduler: Any = ASHAScheduler(
            max_t=ROUNDS, grace_period=min(tuning.grace_period, ROUNDS), reduction_factor=2
        )
    elif tuning.scheduler == "median":
        scheduler = MedianStoppingRule(grace_period=tuning.grace_period, min_samples_required=2)
    else:
        scheduler = FIFOScheduler()
    with tempfile.TemporaryDirectory(prefix="matih-tune-") as storage:
        tuner = tune.Tuner(
            trainable,
            param_space={k: _distribution(v) for k, v in tuning.search_space.items()},
            tune_config=tune.TuneConfig(
                metric=tuning.metric,
                mode=tuning.mode,
                num_samples=tuning.num_samples,
                scheduler=scheduler,
                # Seeded sampling: the same job samples the same configs.
                search_alg=BasicVariantGenerator(random_state=spec.data.seed),
                max_concurrent_trials=tuning.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(storage_path=storage, name="job", verbose=0),
        )
        grid = tuner.fit()
        return [grid[i] for i in range(len(grid))]


def _log_trials(
    services: Services, tenant_id: str, spec: JobSpec, parent_id: str, results: list[Any]
) -> list[TrialResult]:
    """Record each trial as a run nested under the parent, from the driver."""
    assert spec.tuning is not None
    metric = spec.tuning.metric
    trials: list[TrialResult] = []
    for i, result in enumerate(results):
        history = result.metrics_dataframe
        points: list[MetricPoint] = []
        if history is not None and metric in history:
            for step, value in zip(history["training_iteration"], history[metric], strict=True):
                points.append(MetricPoint(metric, float(value), int(step)))
        iterations = len(points)
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        # The trainable always reports ROUNDS times, so fewer without an error means the
        # scheduler stopped it (Tune's Result does not carry the trial's status).
        early = error is None and iterations < ROUNDS
        config = dict(result.config)
        run = services.runs.create_run(
            tenant_id,
            f"jobs/{spec.model_name}",
            run_name=f"{spec.name}/trial-{i}",
            tags={_PARENT_TAG: parent_id},
            job_id=spec.name,
        )
        run_id = run.info.run_id
        state = "ERROR" if error else ("EARLY_STOPPED" if early else "TERMINATED")
        services.runs.log_batch(
            tenant_id,
            run_id,
            points,
            params={**spec.trainer.params, **config},
            tags={"trial_state": state, "iterations": str(iterations)},
        )
        services.runs.end_run(tenant_id, run_id, "FAILED" if error else "FINISHED")
        last = points[-1].value if points else None
        trials.append(TrialResult(config, last, iterations, early, error, run_id))
    return trials


def _best(spec: JobSpec, trials: list[TrialResult]) -> TrialResult | None:
    # Ranked by the last value of a trial that ran every round: a trial stopped early
    # was stopped for being behind, and its early value is not comparable.
    assert spec.tuning is not None
    done = [t for t in trials if t.error is None and t.metric is not None and not t.early_stopped]
    done = done or [t for t in trials if t.error is None and t.metric is not None]
    if not done:
        return None
    sign = 1 if spec.tuning.mode == "max" else -1
    return max(done, key=lambda t: sign * t.metric)  # type: ignore[operator]


# ----------------------------------------------------------------------- baseline


def _production_version(services: Services, tenant_id: str, model: str) -> str | None:
    with services.db.uow() as session:
        stages = lifecycle_store.stages(session, tenant_id, model)
    live = [v for v, s in stages.items() if s == "production"]
    return str(max(live)) if live else None


def _baseline_score(
    services: Services, tenant_id: str, spec: JobSpec, version: str, x: pd.DataFrame, y: Any
) -> float:
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="matih-baseline-") as tmp:
        local = services.registry.download_version(tenant_id, spec.model_name, version, Path(tmp))
        pyfunc = mlflow.pyfunc.load_model(str(local))
        # The sklearn estimator itself, so roc_auc can use predict_proba; any other
        # flavour is scored on pyfunc predictions.
        raw = pyfunc.get_raw_model() if "sklearn" in pyfunc.metadata.flavors else None
        model = raw if raw is not None and hasattr(raw, "predict") else pyfunc
        return _score(spec.evaluation.primary_metric, model, x, np.asarray(y))


def _beats(spec: JobSpec, value: float, baseline: float, version: str) -> tuple[bool, str]:
    """Whether ``value`` beats the production ``baseline``, and if not, the reason."""
    ev = spec.evaluation
    metric = ev.primary_metric
    gain = value - baseline if ev.higher_is_better else baseline - value
    # A tie is no reason for a new version; min_improvement asks for more than that.
    if gain > 0 and gain >= ev.min_improvement:
        return True, ""
    against = f"baseline {baseline:.4g} ({metric}, production v{version})"
    if gain > 0:
        return False, (
            f"not registered: {value:.4g} improves on {against} by {gain:.4g}, "
            f"less than min_improvement {ev.min_improvement:g}"
        )
    sign = "=" if gain == 0 else ("<" if ev.higher_is_better else ">")
    return False, f"not registered: {value:.4g} {sign} {against}"


# ---------------------------------------------------------------------------- job


def run_job(
    services: Services,
    tenant_id: str,
    spec: JobSpec,
    *,
    data_root: Path,
    actor: str = "",
    ray_address: str | None = None,
) -> JobResult:
    """Run a training job in a tenant and register the model if it beats production.

    The parent run (experiment ``jobs/<model_name>``) ends FINISHED, or FAILED when the
    job fails or raises. Trials are logged as runs nested under it.

    Args:
        services: The service layer.
        tenant_id: The tenant the job runs in.
        spec: The validated job (see :func:`~matih_ml.training.spec.validate_job`).
        data_root: The tenant's data folder; ``spec.data.path`` is relative to it.
        actor: Who started the job (recorded on the runs, version and stage move).
        ray_address: A Ray cluster to tune on; a local Ray (2 CPUs) when None. An
            already initialised Ray is used as it is.

    Returns:
        What the job did. A refusing lifecycle gate is an outcome here: the version is
        registered, stays in development and ``gate_reasons`` says why.

    Raises:
        ValidationError: For a trainer or data kind not supported yet, or a table that
            does not fit the spec.
    """
    if spec.trainer.kind != "sklearn" or spec.trainer.estimator is None:
        raise ValidationError("trainer.kind: not supported yet", details={"field": "trainer.kind"})
    if spec.data.kind != "table":
        raise ValidationError("data.kind: not supported yet", details={"field": "data.kind"})
    estimator = spec.trainer.estimator
    classifier = estimator not in REGRESSORS
    x, y = _read_table(spec, data_root)
    x_train, x_hold, y_train, y_hold = _split(
        x, y, spec.data.holdout_fraction, spec.data.seed, classifier
    )
    parent = services.runs.create_run(
        tenant_id,
        f"jobs/{spec.model_name}",
        run_name=spec.name,
        tags=spec.tags,
        user_id=actor,
        job_id=spec.name,  # the matih.job_id tag: user tags may not use 'matih.'
    )
    parent_id = parent.info.run_id
    try:
        result = _run(
            services,
            tenant_id,
            spec,
            x_train,
            x_hold,
            y_train,
            y_hold,
            parent_id,
            actor,
            ray_address,
        )
    except BaseException:
        services.runs.end_run(tenant_id, parent_id, "FAILED")
        raise
    services.runs.end_run(
        tenant_id, parent_id, "FAILED" if result.status == "failed" else "FINISHED"
    )
    return result


def _run(
    services: Services,
    tenant_id: str,
    spec: JobSpec,
    x_train: pd.DataFrame,
    x_hold: pd.DataFrame,
    y_train: Any,
    y_hold: Any,
    parent_id: str,
    actor: str,
    ray_address: str | None,
) -> JobResult:
    estimator = spec.trainer.estimator
    assert estimator is not None
    metric = spec.evaluation.primary_metric
    result = JobResult("failed", "", metric, parent_run_id=parent_id)
    params: dict[str, Any] = dict(spec.trainer.params)
    if spec.tuning is not None:
        _ensure_ray(ray_address)
        results = _tune(spec, x_train, np.asarray(y_train), estimator not in REGRESSORS)
        result.trials = _log_trials(services, tenant_id, spec, parent_id, results)
        best = _best(spec, result.trials)
        if best is None:
            result.reason = f"failed: all {len(result.trials)} trials failed"
            return result
        params.update(best.config)
    result.params = params
    model = _estimator(estimator, params, spec.data.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings belong to the metric
        model.fit(x_train, y_train)
    value = _score(metric, model, x_hold, np.asarray(y_hold))
    result.value = value
    log: dict[str, float] = {metric: value}
    baseline_version = _production_version(services, tenant_id, spec.model_name)
    if baseline_version is not None:
        baseline = _baseline_score(services, tenant_id, spec, baseline_version, x_hold, y_hold)
        result.baseline_value, result.baseline_version = baseline, baseline_version
        log[f"baseline_{metric}"] = baseline
    services.runs.log_batch(
        tenant_id,
        parent_id,
        [MetricPoint(k, v) for k, v in log.items()],
        params=params,
        tags={"baseline_version": baseline_version or "none"},
    )
    if result.baseline_value is not None:
        beats, why = _beats(spec, value, result.baseline_value, baseline_version or "")
        if not beats:
            result.status, result.reason = "not_registered", why
            return result
    if not spec.register:
        result.status = "not_registered"
        result.reason = f"not registered: register is false ({metric} {value:.4g})"
        return result
    _, version = services.registry.register_model_version(
        tenant_id,
        spec.model_name,
        model,
        "sklearn",
        {metric: value},
        params,
        dict(spec.tags),
        created_by=actor or None,
        input_example=x_hold.iloc[:_EXAMPLE_ROWS],
        description=f"training job {spec.name}",
    )
    result.status, result.registered_version, result.stage = (
        "registered",
        version.version,
        "development",
    )
    against = (
        f" (baseline v{baseline_version} {result.baseline_value:.4g})"
        if result.baseline_value is not None
        else " (no production baseline)"
    )
    result.reason = f"registered v{version.version}: {metric} {value:.4g}{against}"
    if spec.target_stage != "development":
        try:
            services.lifecycle.transition_stage(
                tenant_id,
                spec.model_name,
                version.version,
                spec.target_stage,
                actor=actor,
                reason=f"training job {spec.name}",
            )
            result.stage = spec.target_stage
        except GateFailedError as exc:
            result.gate_reasons = [str(r) for r in exc.details.get("reasons", [])] or [exc.message]
            result.reason += f"; the {spec.target_stage} gate refused: " + "; ".join(
                result.gate_reasons
            )
    services.runs.log_batch(
        tenant_id,
        parent_id,
        tags={"registered_version": version.version, "stage": result.stage or ""},
    )
    return result
