"""The sklearn estimators a built-in trainer may run, their rounds, and their scores."""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

from matih_ml.errors import ValidationError

ROUNDS = 5  # report rounds per trial: what ASHA and the median rule can stop between
GROWS_TREES = frozenset(
    {
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.RandomForestRegressor",
    }
)
DEFAULT_ESTIMATORS = 100
DEFAULT_MAX_ITER = 100


def estimator(path: str, params: dict[str, Any], seed: int) -> Any:
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


def score(metric: str, model: Any, x: Any, y: np.ndarray) -> float:
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


def round_params(path: str, params: dict[str, Any], step: int) -> dict[str, Any]:
    """The params of round ``step`` (1..ROUNDS): a growing share of the trees, or of
    the iterations, so an early round is a cheap look at the final model."""
    if path in GROWS_TREES:
        total = int(params.get("n_estimators", DEFAULT_ESTIMATORS))
        return {**params, "n_estimators": max(1, math.ceil(total * step / ROUNDS))}
    total = int(params.get("max_iter", DEFAULT_MAX_ITER))
    return {**params, "max_iter": max(1, math.ceil(total * step / ROUNDS))}
