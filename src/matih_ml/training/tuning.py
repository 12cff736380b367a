"""Ray Tune for a training job: the trainable, the search, and the trials' runs.

Trials run in Ray worker processes with plain data (numpy arrays and a dict of settings);
they hold no MLflow client and no tenant scope, so their runs are logged from the driver
once Tune's results are back, nested under the job's parent run.
"""

from __future__ import annotations

import tempfile
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matih_ml.services import Services
from matih_ml.tracking.runs import MetricPoint
from matih_ml.training import estimators as est
from matih_ml.training.data import split
from matih_ml.training.estimators import GROWS_TREES, ROUNDS
from matih_ml.training.spec import JobSpec, SearchDim

_STOPS: dict[str, Callable[[], bool]] = {}
VALIDATION_FRACTION = 0.2  # of the train split, for trials: the holdout stays unseen
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


def trial(
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
        round_params = est.round_params(path, params, step)
        with warnings.catch_warnings():
            # A short round of LogisticRegression does not converge: that is the point.
            warnings.simplefilter("ignore")
            if path in GROWS_TREES and model is not None:
                # warm_start adds the new trees to the fitted ones instead of refitting.
                model.set_params(n_estimators=round_params["n_estimators"])
            else:
                model = est.estimator(path, round_params, task["seed"])
                if path in GROWS_TREES:
                    model.set_params(warm_start=True)
            model.fit(x_fit, y_fit)
        tune.report({task["metric"]: est.score(task["metric"], model, x_val, y_val)})


def _stopped(key: str) -> bool:
    # Module-level, so that cloudpickle sends a reference to it, not the flags.
    flag = _STOPS.get(key)
    return flag is not None and flag()


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


def ensure_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    target = address or "local"
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if target == "local":
        options["num_cpus"] = 2  # the service's host is shared: do not take every core
    ray.init(address=target, **options)


def tune_job(
    spec: JobSpec,
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    classifier: bool,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Any]:
    """Run the search; return Tune's results (one per trial).

    ``should_stop`` is polled by Tune between results; once true, every trial stops.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.stopper import Stopper

    tuning = spec.tuning
    assert tuning is not None and spec.trainer.estimator is not None
    x_fit, x_val, y_fit, y_val = split(
        x_train, y_train, VALIDATION_FRACTION, spec.data.seed, classifier
    )
    task = {
        "estimator": spec.trainer.estimator,
        "params": dict(spec.trainer.params),
        "metric": tuning.metric,
        "seed": spec.data.seed,
    }
    trainable = tune.with_parameters(
        trial,
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

    # Tune pickles its stopper, and a job's cancel flag holds a lock: the stopper keeps
    # a key to the flag instead (it runs in this process, where the flag lives).
    key = uuid.uuid4().hex
    _STOPS[key] = should_stop

    class Cancel(Stopper):
        # A cancelled job stops its trials at their next report.
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return self.stop_all()

        def stop_all(self) -> bool:
            return _stopped(key)

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
            run_config=tune.RunConfig(storage_path=storage, name="job", verbose=0, stop=Cancel()),
        )
        try:
            grid = tuner.fit()
        finally:
            _STOPS.pop(key, None)
        return [grid[i] for i in range(len(grid))]


def log_trials(
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


def best_trial(spec: JobSpec, trials: list[TrialResult]) -> TrialResult | None:
    # Ranked by the last value of a trial that ran every round: a trial stopped early
    # was stopped for being behind, and its early value is not comparable.
    assert spec.tuning is not None
    done = [t for t in trials if t.error is None and t.metric is not None and not t.early_stopped]
    done = done or [t for t in trials if t.error is None and t.metric is not None]
    if not done:
        return None
    sign = 1 if spec.tuning.mode == "max" else -1
    return max(done, key=lambda t: sign * t.metric)  # type: ignore[operator]
