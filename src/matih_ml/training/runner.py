"""Run a training job: read the table, tune on a local Ray, refit, beat production, register.

:func:`run_job` is the one entry point. Only sklearn trainers on table data run for now.
The table is read by :mod:`~matih_ml.training.data`, the search runs in
:mod:`~matih_ml.training.tuning`, and the estimators and their scores are in
:mod:`~matih_ml.training.estimators`.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matih_ml.errors import GateFailedError, ValidationError
from matih_ml.services import Services
from matih_ml.store import lifecycle_store
from matih_ml.tracking.runs import MetricPoint
from matih_ml.training import estimators
from matih_ml.training.data import read_table, split
from matih_ml.training.spec import REGRESSORS, JobSpec
from matih_ml.training.tuning import TrialResult, best_trial, ensure_ray, log_trials, tune_job

_EXAMPLE_ROWS = 200


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
        return estimators.score(spec.evaluation.primary_metric, model, x, np.asarray(y))


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
    x, y = read_table(spec, data_root)
    x_train, x_hold, y_train, y_hold = split(
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
        ensure_ray(ray_address)
        results = tune_job(spec, x_train, np.asarray(y_train), estimator not in REGRESSORS)
        result.trials = log_trials(services, tenant_id, spec, parent_id, results)
        best = best_trial(spec, result.trials)
        if best is None:
            result.reason = f"failed: all {len(result.trials)} trials failed"
            return result
        params.update(best.config)
    result.params = params
    model = estimators.estimator(estimator, params, spec.data.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings belong to the metric
        model.fit(x_train, y_train)
    value = estimators.score(metric, model, x_hold, np.asarray(y_hold))
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
