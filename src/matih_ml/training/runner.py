"""Run a training job: read its data, fit, score against production, register, stage.

:func:`run_job` is the one entry point. Tables are read by :mod:`~matih_ml.training.data`
and Feast features by :mod:`~matih_ml.training.features`; the trainers are in
:mod:`~matih_ml.training.trainers`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matih_ml.errors import GateFailedError
from matih_ml.job_spec import JobSpec
from matih_ml.store import lifecycle_store
from matih_ml.tracking.runs import MetricPoint
from matih_ml.training import estimators, trainers
from matih_ml.training.collaborators import TrainingServices
from matih_ml.training.context import JobCancelled, JobContext
from matih_ml.training.data import read_table, split
from matih_ml.training.tuning import TrialResult

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
        rows: Rows read (after the point-in-time join, for Feast data).
        features: Feast lineage tags (feature views and their versions), if any.
        info: Trainer facts (pytorch: epochs run, restarts, checkpoint path).
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
    rows: int = 0
    features: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def outcome(self) -> dict[str, Any]:
        """The job's outcome as its ``MODEL_TRAINING_COMPLETED`` event carries it."""
        return {
            "status": self.status,
            "reason": self.reason,
            "registered_version": self.registered_version,
            "stage": self.stage,
        }


# ----------------------------------------------------------------------- baseline


def _production_version(services: TrainingServices, tenant_id: str, model: str) -> str | None:
    with services.db.uow(tenant=tenant_id) as session:
        stages = lifecycle_store.stages(session, tenant_id, model)
    live = [v for v, s in stages.items() if s == "production"]
    return str(max(live)) if live else None


def _baseline_score(
    services: TrainingServices, tenant_id: str, spec: JobSpec, version: str, x: pd.DataFrame, y: Any
) -> float:
    with tempfile.TemporaryDirectory(prefix="matih-baseline-") as tmp:
        local = services.registry.download_version(tenant_id, spec.model_name, version, Path(tmp))
        # Loaded as serving loads it: in process if it is data, else in a sandbox.
        with services.runtime.open(tenant_id, spec.model_name, local) as loaded:
            # The sklearn estimator itself, so roc_auc can use predict_proba; any other
            # flavour is scored on its predictions.
            raw = loaded.raw
            model = raw if raw is not None and hasattr(raw, "predict") else _Pyfunc(loaded, y)
            return estimators.score(spec.evaluation.primary_metric, model, x, np.asarray(y))


class _Pyfunc:
    """A pyfunc model as the scorer sees an estimator. A model answering one column per
    class (the pytorch trainer's probabilities) is read as the classes in sorted order."""

    def __init__(self, pyfunc: Any, y: Any) -> None:
        self._pyfunc = pyfunc
        self.classes_ = np.unique(np.asarray(y))

    def _raw(self, x: pd.DataFrame) -> np.ndarray:
        inputs = x.astype(np.float32) if "pytorch" in self._pyfunc.flavors else x
        return np.asarray(self._pyfunc.predict(inputs))

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        out = self._raw(x)
        if out.ndim == 2 and out.shape[1] == len(self.classes_) > 1:
            return self.classes_[out.argmax(axis=1)]
        return out.reshape(len(x))

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return self._raw(x)


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
    services: TrainingServices,
    tenant_id: str,
    spec: JobSpec,
    *,
    data_root: str | Path,
    actor: str = "",
    ray_address: str | None = None,
    context: JobContext | None = None,
) -> JobResult:
    """Run a training job in a tenant and register the model if it beats production.

    The job's run (experiment ``jobs/<model_name>``) is created first, so a job that
    fails reading its data still has a run and its two training events. It ends
    FINISHED, FAILED when the job fails or raises, or KILLED when it is cancelled; its
    ``MODEL_TRAINING_COMPLETED`` event carries the job's outcome. Trials are runs
    nested under it.

    Args:
        services: The service layer.
        tenant_id: The tenant the job runs in.
        spec: The validated job (see :func:`~matih_ml.job_spec.validate_job`).
        data_root: The tenant's data root (a folder or an ``s3://`` prefix); table and
            entity paths are read under it only.
        actor: Who started the job (recorded on the runs, version and stage move).
        ray_address: A Ray cluster to run on; a local Ray (2 CPUs) when None. An
            already initialised Ray is used as it is.
        context: The executor's side: the job id, its log, and its cancel flag.

    Returns:
        What the job did. A refusing lifecycle gate is an outcome here: the version is
        registered, stays in development and ``gate_reasons`` says why.

    Raises:
        ValidationError: For data that does not fit the spec (a missing column, a
            table outside the data root...).
        JobCancelled: When ``context`` says the job was cancelled.
    """
    ctx = context or JobContext(job_id=spec.name)
    job_id = ctx.job_id or spec.name
    parent = services.runs.create_run(
        tenant_id,
        f"jobs/{spec.model_name}",
        run_name=spec.name,
        tags=spec.tags,
        user_id=actor,
        job_id=job_id,  # the matih.job_id tag: user tags may not use 'matih.'
    )
    parent_id = parent.info.run_id
    ctx.on_parent_run(parent_id)
    ctx.log(f"run {parent_id} in experiment jobs/{spec.model_name}")
    result = JobResult("failed", "", spec.evaluation.primary_metric, parent_run_id=parent_id)
    try:
        _run(services, tenant_id, spec, data_root, actor, ray_address, ctx, job_id, result)
    except JobCancelled:
        result.status, result.reason = "cancelled", "cancelled while running"
        _end(services, tenant_id, result, job_id, "KILLED")
        raise
    except BaseException as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        result.status, result.reason = "failed", f"failed: {message}"
        _end(services, tenant_id, result, job_id, "FAILED")
        raise
    _end(services, tenant_id, result, job_id, "FAILED" if result.status == "failed" else "FINISHED")
    return result


def _end(
    services: TrainingServices, tenant_id: str, result: JobResult, job_id: str, status: str
) -> None:
    job = {"job_id": job_id, "outcome": result.outcome()}
    services.runs.end_run(tenant_id, result.parent_run_id, status, job=job)


def _read(
    services: TrainingServices,
    tenant_id: str,
    spec: JobSpec,
    data_root: str | Path,
    ctx: JobContext,
) -> tuple[pd.DataFrame, pd.Series, dict[str, str]]:
    if spec.data.kind == "table":
        x, y = read_table(spec, data_root)
        ctx.log(f"read {len(x)} rows, {x.shape[1]} features from {spec.data.path}")
        return x, y, {}
    from matih_ml.training.features import read_features

    repo = Path(services.settings.feast_repo(tenant_id))
    x, y, lineage = read_features(spec, repo, data_root)
    views = ", ".join(f"{v['name']}@{v['version']}" for v in lineage.views)
    ctx.log(f"Feast: {len(x)} rows after the point-in-time join, views {views}")
    return x, y, lineage.as_tags()


def _run(
    services: TrainingServices,
    tenant_id: str,
    spec: JobSpec,
    data_root: str | Path,
    actor: str,
    ray_address: str | None,
    ctx: JobContext,
    job_id: str,
    result: JobResult,
) -> None:
    metric = spec.evaluation.primary_metric
    x, y, lineage = _read(services, tenant_id, spec, data_root, ctx)
    result.rows, result.features = len(x), lineage
    if lineage:
        services.runs.log_batch(tenant_id, result.parent_run_id, tags=lineage)
    classifier = trainers.is_classifier(spec)
    x_train, x_hold, y_train, y_hold = split(
        x, y, spec.data.holdout_fraction, spec.data.seed, classifier
    )
    ctx.check()
    trained = trainers.fit(
        services,
        tenant_id,
        spec,
        x_train,
        y_train,
        parent_id=result.parent_run_id,
        job_id=job_id,
        ray_address=ray_address,
        ctx=ctx,
    )
    ctx.check()
    if isinstance(trained, str):
        result.reason = trained
        return
    result.params, result.trials, result.info = trained.params, trained.trials, trained.info
    value = estimators.score(metric, trained.scorer, x_hold, np.asarray(y_hold))
    result.value = value
    log: dict[str, float] = {metric: value}
    baseline_version = _production_version(services, tenant_id, spec.model_name)
    if baseline_version is not None:
        baseline = _baseline_score(services, tenant_id, spec, baseline_version, x_hold, y_hold)
        result.baseline_value, result.baseline_version = baseline, baseline_version
        log[f"baseline_{metric}"] = baseline
    shown = f"holdout {metric} {value:.4g}"
    if result.baseline_value is not None:
        shown += f", production v{baseline_version} {result.baseline_value:.4g}"
    ctx.log(shown)
    services.runs.log_batch(
        tenant_id,
        result.parent_run_id,
        [MetricPoint(k, v) for k, v in log.items()],
        params=trained.params,
        tags={"baseline_version": baseline_version or "none"},
    )
    if result.baseline_value is not None:
        beats, why = _beats(spec, value, result.baseline_value, baseline_version or "")
        if not beats:
            result.status, result.reason = "not_registered", why
            return
    if not spec.register:
        result.status = "not_registered"
        result.reason = f"not registered: register is false ({metric} {value:.4g})"
        return
    ctx.check()
    _register(services, tenant_id, spec, trained, x_hold, actor, job_id, result)


def _register(
    services: TrainingServices,
    tenant_id: str,
    spec: JobSpec,
    trained: trainers.Trained,
    x_hold: pd.DataFrame,
    actor: str,
    job_id: str,
    result: JobResult,
) -> None:
    metric, value = result.metric, result.value
    assert value is not None
    example: Any = x_hold.iloc[:_EXAMPLE_ROWS]
    if trained.framework == "pytorch":
        # MLflow traces the module ('pt2') with it: a float32 array, as forward takes.
        example = example.to_numpy(np.float32)
    # Lineage: the version points at the job and its run, and at the Feast views read.
    tags = {**spec.tags, "job_id": job_id, "training_run_id": result.parent_run_id}
    tags.update(result.features)
    _, version = services.lifecycle.register_model(
        tenant_id,
        spec.model_name,
        trained.model,
        trained.framework,
        {metric: value},
        trained.params,
        tags,
        created_by=actor or None,
        input_example=example,
        description=f"training job {spec.name} ({job_id})",
        model_type=trained.model_type,
    )
    result.status, result.registered_version, result.stage = (
        "registered",
        version.version,
        version.stage,
    )
    against = (
        f" (baseline v{result.baseline_version} {result.baseline_value:.4g})"
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
                reason=f"training job {spec.name} ({job_id})",
            )
            result.stage = spec.target_stage
            result.reason += f"; moved to {spec.target_stage}"
        except GateFailedError as exc:
            result.gate_reasons = [str(r) for r in exc.details.get("reasons", [])] or [exc.message]
            result.reason += f"; the {spec.target_stage} gate refused: " + "; ".join(
                result.gate_reasons
            )
    services.runs.log_batch(
        tenant_id,
        result.parent_run_id,
        tags={"registered_version": version.version, "stage": result.stage or ""},
    )
