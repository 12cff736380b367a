"""Ray Tune for a training job: the trainable, the search, and the trials' runs.

Trials run in Ray worker processes with plain data (numpy arrays and a dict of settings);
they hold no MLflow client and no tenant scope, so their runs are logged from the driver
once Tune's results are back, nested under the job's parent run.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matih_ml.job_spec import JobSpec, SearchDim
from matih_ml.tracking.runs import MetricPoint
from matih_ml.training import estimators as est
from matih_ml.training.collaborators import TrainingServices
from matih_ml.training.data import split
from matih_ml.training.estimators import GROWS_TREES, ROUNDS

_STOPS: dict[str, Callable[[], bool]] = {}
_LIVE: dict[str, LiveTrials] = {}
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


def _live_start(key: str, trial_id: str, config: dict[str, Any]) -> None:
    live = _LIVE.get(key)
    if live is not None:
        live.started(trial_id, config)


def _live_result(key: str, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
    live = _LIVE.get(key)
    if live is not None and live.metric in result:
        live.reported(
            trial_id, config, int(result["training_iteration"]), float(result[live.metric])
        )


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


class LiveTrials:
    """Each trial as a run nested under the job's run: created when Tune starts the
    trial, fed each round as Tune reports it (so a long sweep can be watched), and ended
    with its state by :func:`log_trials`."""

    def __init__(
        self, services: TrainingServices, tenant_id: str, spec: JobSpec, parent_id: str, job_id: str
    ) -> None:
        assert spec.tuning is not None
        self.metric = spec.tuning.metric
        self.runs: dict[str, str] = {}
        self.steps: dict[str, set[int]] = {}
        self._services, self._tenant, self._spec = services, tenant_id, spec
        self._parent, self._job_id = parent_id, job_id
        self._lock = threading.Lock()

    def started(self, trial_id: str, config: dict[str, Any]) -> str:
        """The trial's run, created on first sight."""
        with self._lock:
            if trial_id in self.runs:
                return self.runs[trial_id]
            n = len(self.runs)
            spec = self._spec
            run = self._services.runs.create_run(
                self._tenant,
                f"jobs/{spec.model_name}",
                run_name=f"{spec.name}/trial-{n}",
                tags={_PARENT_TAG: self._parent},
                job_id=self._job_id,
            )
            run_id = self.runs[trial_id] = run.info.run_id
            self.steps[trial_id] = set()
        self._services.runs.log_batch(
            self._tenant, run_id, params={**spec.trainer.params, **config}
        )
        return run_id

    def reported(self, trial_id: str, config: dict[str, Any], step: int, value: float) -> None:
        """One round of a trial."""
        run_id = self.started(trial_id, config)
        self._services.runs.log_batch(self._tenant, run_id, [MetricPoint(self.metric, value, step)])
        self.steps[trial_id].add(step)

    def finish(self, run_id: str, state: str, iterations: int, error: str | None) -> None:
        """Tag the trial's state and end its run."""
        tags = {"trial_state": state, "iterations": str(iterations)}
        if error:
            tags["error"] = error[:5000]
        self._services.runs.log_batch(self._tenant, run_id, tags=tags)
        status = "FAILED" if error else ("KILLED" if state == "CANCELLED" else "FINISHED")
        self._services.runs.end_run(self._tenant, run_id, status)


def tune_job(
    spec: JobSpec,
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    classifier: bool,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    live: LiveTrials | None = None,
) -> list[Any]:
    """Run the search; return Tune's results (one per trial).

    ``should_stop`` is polled by Tune between results; once true, every trial stops.
    ``live`` gets each trial's start and each of its rounds as Tune reports them.
    """
    from ray import tune
    from ray.tune import Callback
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
    if live is not None:
        _LIVE[key] = live

    class Live(Callback):
        # Tune calls these in the driver, as results arrive: trials are logged live.
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _live_start(key, trial.trial_id, dict(trial.config))

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            _live_result(key, trial.trial_id, dict(trial.config), result)

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
            run_config=tune.RunConfig(
                storage_path=storage, name="job", verbose=0, stop=Cancel(), callbacks=[Live()]
            ),
        )
        try:
            grid = tuner.fit()
        finally:
            _STOPS.pop(key, None)
            _LIVE.pop(key, None)
        return [grid[i] for i in range(len(grid))]


def log_trials(
    live: LiveTrials, results: list[Any], *, cancelled: bool = False
) -> list[TrialResult]:
    """End each trial's run with its state, from the driver once Tune is done.

    Trials that reported were logged live; one that failed before its first report gets
    its run here. After a cancel, the trials' runs end KILLED, and trials that never
    started have none.
    """
    trials: list[TrialResult] = []
    for result in results:
        metrics = result.metrics or {}
        if not metrics and result.error is None and result.config is None:
            continue  # never started: the job was cancelled first
        trial_id = str(metrics.get("trial_id") or uuid.uuid4().hex)
        config = dict(result.config or {})
        history = result.metrics_dataframe
        points: list[MetricPoint] = []
        if history is not None and live.metric in history:
            for step, value in zip(
                history["training_iteration"], history[live.metric], strict=True
            ):
                points.append(MetricPoint(live.metric, float(value), int(step)))
        for p in points:  # rounds the callbacks missed (none, unless Tune dropped one)
            if p.step not in live.steps.get(trial_id, ()):
                live.reported(trial_id, config, p.step, p.value)
        run_id = live.started(trial_id, config)
        iterations = len(points)
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        # The trainable always reports ROUNDS times, so fewer without an error means the
        # scheduler stopped it (Tune's Result does not carry the trial's status).
        early = error is None and iterations < ROUNDS
        state = "ERROR" if error else ("EARLY_STOPPED" if early else "TERMINATED")
        if cancelled and not error and early:
            state = "CANCELLED"
        live.finish(run_id, state, iterations, error)
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
