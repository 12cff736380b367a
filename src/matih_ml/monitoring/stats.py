"""Reference profiles and drift statistics for model monitoring, as pure functions.

A profile is built once from a training sample (or input example) and stored as JSON;
live rows and predictions are compared with it by PSI, a two-sample KS test against a
stored subsample, and the prediction mean's shift in reference standard deviations.

* A cell that is a list, tuple or array (a multi-output prediction) stands for its
  first element, in reference and live data alike, so both sides compare the same way.
* ``None``, NaN and infinities are not usable values: they are left out of counts and
  statistics, which keeps the stored profile valid JSON.
* Where either side has no usable values there is no evidence of drift: ``psi`` returns
  0.0, ``ks`` returns ``(0.0, 1.0)`` and ``prediction_shift`` 0.0.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
from scipy import stats as sp_stats

# The profile's file among a version's files (written at registration, read by serving).
PROFILE_FILE = "matih_reference_profile.json"
PROFILE_VERSION = 1
OTHER = "__other__"
TOP_CATEGORIES = 20
QUANTILES = {f"p{round(q * 100):02d}": q for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)}


def _scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        return flat[0].item() if flat.size else None
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def _is_number(value: Any) -> bool:
    # numpy registers its integer and float types as numbers.Real, but not np.bool_.
    return isinstance(value, Real | np.bool_)


def _is_missing(value: Any) -> bool:
    return value is None or (_is_number(value) and not math.isfinite(float(value)))


def _usable(values: Iterable[Any]) -> list[Any]:
    return [v for v in (_scalar(x) for x in values) if not _is_missing(v)]


def _numbers(values: Iterable[Any]) -> np.ndarray:
    # Non-numeric cells cannot be placed in a numeric profile's bins; one bad row
    # should not fail a whole monitoring pass, so they are dropped.
    return np.asarray([float(v) for v in _usable(values) if _is_number(v)], dtype=np.float64)


def _bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    # side="right" puts a value equal to an edge in the bin above it, so a constant
    # feature (a single edge at its value) lands entirely in the last bin.
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def _numeric_profile(
    values: np.ndarray, *, bins: int, sample_size: int, rng: np.random.Generator
) -> dict[str, Any]:
    if values.size == 0:
        return {"kind": "numeric", "count": 0}
    cut_points = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(np.quantile(values, cut_points)) if bins > 1 else np.empty(0)
    if values.size > sample_size:
        # Sorted indices keep the subsample in row order, independent of draw order.
        sample = values[np.sort(rng.choice(values.size, size=sample_size, replace=False))]
    else:
        sample = values
    levels = np.quantile(values, list(QUANTILES.values()))
    return {
        "kind": "numeric",
        "count": int(values.size),
        "mean": float(np.mean(values)),
        # Population std: defined for a single value, and the sample is not small.
        "std": float(np.std(values)),
        "quantiles": {k: float(q) for k, q in zip(QUANTILES, levels, strict=True)},
        "edges": [float(e) for e in edges],
        "fractions": [float(f) for f in _bin_shares(values, edges)],
        "sample": [float(s) for s in sample],
    }


def _categorical_profile(values: list[Any]) -> dict[str, Any]:
    counts = Counter(str(v) for v in values)
    # Ties are broken by value so that the kept categories do not depend on row order.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    fractions = {key: n / len(values) for key, n in ranked[:TOP_CATEGORIES]}
    rest = sum(n for _, n in ranked[TOP_CATEGORIES:])
    if rest:
        fractions[OTHER] = fractions.get(OTHER, 0.0) + rest / len(values)
    return {"kind": "categorical", "count": len(values), "fractions": fractions}


def _profile_column(
    values: Sequence[Any], *, bins: int, sample_size: int, rng: np.random.Generator
) -> dict[str, Any]:
    usable = _usable(values)
    if not all(_is_number(v) for v in usable):
        return _categorical_profile(usable)
    # An empty column also lands here and becomes {"kind": "numeric", "count": 0}.
    numbers = np.asarray([float(v) for v in usable], dtype=np.float64)
    return _numeric_profile(numbers, bins=bins, sample_size=sample_size, rng=rng)


def _rng(seed: int, name: str) -> np.random.Generator:
    # One stream per column, keyed by its name, so adding or reordering features does
    # not change the other features' samples.
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def build_profile(
    features: Mapping[str, Sequence[Any]],
    predictions: Sequence[Any] | None,
    *,
    bins: int = 10,
    sample_size: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Build a JSON-serialisable reference profile from a training sample.

    Args:
        features: Column name to its values. A column whose usable values are all
            numbers (bools count as 0/1) is profiled as numeric, any other as
            categorical.
        predictions: The model's outputs for the same rows, scalars or lists (the
            first element is used), or None.
        bins: Number of quantile bins for numeric PSI; duplicate edges are merged.
        sample_size: Most values kept per numeric column for the KS test.
        seed: Seed for the subsample; the same inputs and seed give the same profile.

    Returns:
        ``{"version", "features", "prediction", "rows"}`` holding only JSON types.

    Raises:
        ValueError: If ``bins`` or ``sample_size`` is below 1.
    """
    if bins < 1 or sample_size < 1:
        raise ValueError("bins and sample_size must be at least 1")
    options: dict[str, Any] = {"bins": bins, "sample_size": sample_size}
    profiled = {
        name: _profile_column(values, rng=_rng(seed, name), **options)
        for name, values in features.items()
    }
    prediction = None
    if predictions is not None:
        prediction = _profile_column(predictions, rng=_rng(seed, "\0prediction"), **options)
    lengths = [len(v) for v in [*features.values(), predictions] if v is not None]
    return {
        "version": PROFILE_VERSION,
        "features": profiled,
        "prediction": prediction,
        "rows": max(lengths, default=0),
    }


def _live_shares(
    reference: Mapping[str, Any], live: Sequence[Any]
) -> tuple[list[float], list[float]]:
    if reference["kind"] == "numeric":
        values = _numbers(live)
        if reference.get("count", 0) == 0 or values.size == 0:
            return [], []
        return list(reference["fractions"]), _bin_shares(values, reference["edges"]).tolist()
    usable = _usable(live)
    if not usable:
        return [], []
    expected: Mapping[str, float] = reference["fractions"]
    counts = Counter(str(v) if str(v) in expected else OTHER for v in usable)
    keys = list(expected) + ([OTHER] if OTHER not in expected else [])
    return (
        [expected.get(k, 0.0) for k in keys],
        [counts.get(k, 0) / len(usable) for k in keys],
    )


def psi(reference: Mapping[str, Any], live: Sequence[Any], *, epsilon: float = 1e-4) -> float:
    """Population Stability Index of live values against one column's profile.

    Args:
        reference: A numeric or categorical column profile from :func:`build_profile`.
        live: Live values of that column. Numeric profiles bin them with the stored
            edges; categorical ones count them by value, unseen values as ``__other__``.
        epsilon: Floor applied to both shares so an empty bin does not give log(0).

    Returns:
        ``sum((live - ref) * ln(live / ref))`` over the bins; 0.0 when either side has
        no usable values.

    Raises:
        ValueError: If ``epsilon`` is not positive.
    """
    if epsilon <= 0:
        raise ValueError("epsilon must be positive")
    expected, actual = _live_shares(reference, live)
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(reference: Mapping[str, Any], live: Sequence[Any]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of live values against the stored sample.

    Args:
        reference: A numeric column profile from :func:`build_profile`.
        live: Live values of that column.

    Returns:
        ``(statistic, p_value)``; ``(0.0, 1.0)`` when either side has no usable values.

    Raises:
        ValueError: If the profile is not numeric.
    """
    if reference["kind"] != "numeric":
        raise ValueError("the KS test needs a numeric profile")
    values = _numbers(live)
    sample = reference.get("sample", [])
    if values.size == 0 or not sample:
        return 0.0, 1.0
    result = sp_stats.ks_2samp(np.asarray(sample, dtype=np.float64), values)
    return float(result.statistic), float(result.pvalue)


def prediction_shift(reference: Mapping[str, Any], live: Sequence[Any]) -> float:
    """Distance of the live mean from the reference mean, in reference std devs.

    Args:
        reference: A numeric profile, normally ``profile["prediction"]``.
        live: Live predictions, scalars or lists (the first element is used).

    Returns:
        ``abs(mean(live) - ref_mean) / ref_std``. With a zero reference std: 0.0 when
        the means agree, else ``math.inf``. 0.0 when either side has no usable values.

    Raises:
        ValueError: If the profile is not numeric.
    """
    if reference["kind"] != "numeric":
        raise ValueError("prediction shift needs a numeric profile")
    values = _numbers(live)
    if reference.get("count", 0) == 0 or values.size == 0:
        return 0.0
    diff = abs(float(np.mean(values)) - reference["mean"])
    if reference["std"] == 0:
        # Tolerance, as the mean of many copies of a float need not equal it exactly.
        same = math.isclose(diff, 0.0, abs_tol=1e-9 * max(1.0, abs(reference["mean"])))
        return 0.0 if same else math.inf
    return diff / reference["std"]


def feature_drift(
    profile: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    psi_threshold: float = 0.2,
    ks_pvalue: float = 0.01,
    min_rows: int = 50,
) -> dict[str, dict[str, float | bool]]:
    """Check each profiled feature of live rows for drift.

    Args:
        profile: A profile from :func:`build_profile`.
        rows: Live input rows, column name to value.
        psi_threshold: PSI above which a feature may have drifted.
        ks_pvalue: KS p-value below which a numeric feature's shift is significant.
        min_rows: Fewer rows than this, or fewer usable values of a feature, are too
            few to judge, and are left out.

    Returns:
        Feature name to ``{"psi", "drifted"}``, plus ``"ks_statistic"`` and
        ``"ks_pvalue"`` for numeric features. A numeric feature has drifted when PSI
        is above the threshold and the KS p-value below its own; a categorical one
        when PSI is above the threshold. Empty below ``min_rows`` rows.
    """
    if len(rows) < min_rows:
        return {}
    report: dict[str, dict[str, float | bool]] = {}
    for name, reference in profile["features"].items():
        if reference.get("count", 0) == 0:
            continue
        cells = [row.get(name) for row in rows]
        live = _numbers(cells) if reference["kind"] == "numeric" else _usable(cells)
        if len(live) < min_rows:
            continue
        score = psi(reference, live)
        result: dict[str, float | bool] = {"psi": score}
        drifted = score > psi_threshold
        if reference["kind"] == "numeric":
            statistic, pvalue = ks(reference, live)
            result.update(ks_statistic=statistic, ks_pvalue=pvalue)
            drifted = drifted and pvalue < ks_pvalue
        result["drifted"] = bool(drifted)
        report[name] = result
    return report


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of values by linear interpolation (numpy's default method).

    Args:
        values: The observations, e.g. request latencies.
        q: The quantile, from 0 to 1 (0.95 for p95).

    Returns:
        The interpolated quantile; 0.0 for empty input.

    Raises:
        ValueError: If ``q`` is outside [0, 1].
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be between 0 and 1")
    if len(values) == 0:
        return 0.0
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))
