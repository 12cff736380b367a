"""Fit a job's model with its trainer: a built-in sklearn estimator (tuned or not), the
built-in pytorch MLP on Ray Train, or an operator-approved entry point.

Each returns a :class:`Trained`: the model to score on the holdout, the model to
register, and how to register it.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from matih_ml.errors import ValidationError
from matih_ml.job_spec import REGRESSION_METRICS, REGRESSORS, JobSpec
from matih_ml.tracking.runs import MetricPoint
from matih_ml.training import estimators
from matih_ml.training.collaborators import TrainingServices
from matih_ml.training.context import JobCancelled, JobContext
from matih_ml.training.ray_session import ensure_ray
from matih_ml.training.tuning import (
    LiveTrials,
    TrialResult,
    best_trial,
    log_trials,
    tune_job,
)


@dataclass
class Trained:
    """A fitted model and how to register it.

    Attributes:
        scorer: Has ``predict`` (and ``predict_proba``/``classes_`` for classifiers).
        model: What the registry saves (an sklearn estimator or a ``torch.nn.Module``).
        framework: ``sklearn`` or ``pytorch``.
        model_type: ``classification`` or ``regression`` (None: the registry infers it).
        params: The hyperparameters it was fitted with.
        trials: The Tune trials, when the job tuned.
        info: Facts for the job's result (epochs, restarts, checkpoint path...).
    """

    scorer: Any
    model: Any
    framework: str
    model_type: str | None
    params: dict[str, Any]
    trials: list[TrialResult] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def is_classifier(spec: JobSpec) -> bool:
    """Whether the job predicts classes (sklearn: by estimator; else by the metric)."""
    if spec.trainer.estimator is not None:
        return spec.trainer.estimator not in REGRESSORS
    return spec.evaluation.primary_metric not in REGRESSION_METRICS


def fit(
    services: TrainingServices,
    tenant_id: str,
    spec: JobSpec,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    *,
    parent_id: str,
    job_id: str,
    ray_address: str | None,
    ctx: JobContext,
) -> Trained | str:
    """Fit the job's model; a string says why no model came out (all trials failed)."""
    kind = spec.trainer.kind  # the spec allows tuning for sklearn trainers only
    if kind == "sklearn":
        return _sklearn(services, tenant_id, spec, x_train, y_train, parent_id, ray_address, ctx)
    if kind == "pytorch":
        return _pytorch(services, tenant_id, spec, x_train, y_train, parent_id, job_id, ctx)
    return _entry_point(spec, x_train, y_train, ctx)


def _sklearn(
    services: TrainingServices,
    tenant_id: str,
    spec: JobSpec,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    parent_id: str,
    ray_address: str | None,
    ctx: JobContext,
) -> Trained | str:
    path = spec.trainer.estimator
    assert path is not None
    params: dict[str, Any] = dict(spec.trainer.params)
    trials: list[TrialResult] = []
    if spec.tuning is not None:
        ensure_ray(ray_address)
        ctx.log(f"tuning: {spec.tuning.num_samples} trials, {spec.tuning.scheduler} scheduler")
        live = LiveTrials(services, tenant_id, spec, parent_id, ctx.job_id or spec.name)
        results = tune_job(
            spec,
            x_train,
            np.asarray(y_train),
            is_classifier(spec),
            should_stop=ctx.cancelled,
            live=live,
        )
        trials = log_trials(live, results, cancelled=ctx.cancelled())
        ctx.check()
        stopped = sum(t.early_stopped for t in trials)
        ctx.log(f"tuning done: {len(trials)} trials, {stopped} stopped early")
        best = best_trial(spec, trials)
        if best is None:
            return f"failed: all {len(trials)} trials failed"
        params.update(best.config)
        ctx.log(f"best trial: {best.config} ({spec.tuning.metric} {best.metric:.4g})")
    model = estimators.estimator(path, params, spec.data.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings belong to the metric
        model.fit(x_train, y_train)
    return Trained(model, model, "sklearn", None, params, trials)


def _pytorch(
    services: TrainingServices,
    tenant_id: str,
    spec: JobSpec,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    parent_id: str,
    job_id: str,
    ctx: JobContext,
) -> Trained:
    from matih_ml.training import torch_train
    from matih_ml.training.data import table_filesystem

    trainer = spec.trainer
    classifier = is_classifier(spec)
    root = f"{services.tenants.tenant_artifact_root(tenant_id)}/training-checkpoints"
    filesystem, local = table_filesystem(root)
    # train_torch takes the URI with its filesystem (and reports checkpoints as URIs).
    storage_path = root if root.startswith("s3://") else local

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        # Logged live by step: an epoch re-run after a resume overwrites its point.
        points = [MetricPoint(k, float(v), epoch) for k, v in metrics.items()]
        services.runs.log_batch(tenant_id, parent_id, points)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        ctx.log(f"epoch {epoch}: {shown}")

    ctx.log(
        f"pytorch: {spec.resources.num_workers} Ray Train workers, {trainer.epochs} epochs, "
        f"checkpoints under {root}"
    )
    try:
        out = torch_train.train_torch(
            spec,
            x_train.to_numpy(np.float32),
            np.asarray(y_train),
            classifier=classifier,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            run_name=job_id,
            on_epoch=on_epoch,
            should_stop=ctx.cancelled,
        )
    except torch_train.TrainingCancelled:
        raise JobCancelled(f"job {job_id} was cancelled") from None
    if out.restarts:
        ctx.log(f"resumed {out.restarts} time(s), from epoch(s) {out.resumed_from}")
    params = {
        "model": trainer.model,
        "hidden": ",".join(str(h) for h in trainer.hidden or []),
        "epochs": trainer.epochs,
        "lr": trainer.lr,
        "batch_size": trainer.batch_size,
        **trainer.params,
    }
    info = {
        "epochs_run": out.epochs_run,
        "restarts": out.restarts,
        "resumed_from": list(out.resumed_from),
        "checkpoint_path": out.checkpoint_path,
    }
    model_type = "classification" if classifier else "regression"
    return Trained(out.predictor, out.module, "pytorch", model_type, params, info=info)


def _entry_point(
    spec: JobSpec, x_train: pd.DataFrame, y_train: pd.Series, ctx: JobContext
) -> Trained:
    from sklearn.base import BaseEstimator

    target = spec.trainer.entry_point
    assert target is not None
    module_name, _, attr = target.partition(":")
    try:
        fn: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValidationError(
            f"trainer.entry_point: {target!r} cannot be loaded: {exc}",
            details={"field": "trainer.entry_point"},
        ) from None
    kwargs: dict[str, Any] = {"params": dict(spec.trainer.params)}
    if "log" in inspect.signature(fn).parameters:
        kwargs["log"] = ctx.log
    ctx.log(f"entry point {target}")
    model = fn(x_train, y_train, **kwargs)
    if not isinstance(model, BaseEstimator) or not hasattr(model, "predict"):
        raise ValidationError(
            f"trainer.entry_point: {target} returned {type(model).__name__}, not a fitted "
            "scikit-learn estimator",
            details={"field": "trainer.entry_point"},
        )
    return Trained(model, model, "sklearn", None, dict(spec.trainer.params))
