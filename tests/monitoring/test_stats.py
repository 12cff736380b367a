"""Drift statistics: profiles are plain JSON, and PSI, KS, the prediction shift and the
per-feature drift check tell a fresh sample of the reference distribution from a shifted
one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from matih_ml.monitoring.stats import (
    OTHER,
    build_profile,
    feature_drift,
    ks,
    prediction_shift,
    psi,
    quantile,
)

SEEDS = [1, 2, 3, 4, 5]


def _normal(seed: int, n: int, mean: float = 0.0) -> list[float]:
    return np.random.default_rng(seed).normal(mean, 1.0, n).tolist()


def _reference(n: int = 5000) -> dict:
    return build_profile({"x": _normal(0, n)}, None)["features"]["x"]


def _choices(seed: int, n: int, values: list[str], p: list[float]) -> list[str]:
    return np.random.default_rng(seed).choice(values, size=n, p=p).tolist()


def _assert_plain_json(value: object) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool)
        if type(value) is float:
            assert math.isfinite(value)


def test_profile_round_trips_through_json() -> None:
    rng = np.random.default_rng(7)
    features = {
        "age": rng.integers(18, 90, 1000),  # numpy ints must come out as plain numbers
        "income": [*rng.lognormal(10, 1, 998).tolist(), None, float("nan")],
        "member": [bool(b) for b in rng.integers(0, 2, 1000)],
        "city": _choices(8, 1000, [f"c{i}" for i in range(30)], [1 / 30] * 30),
        "empty": [],
    }
    predictions = [[p, 1 - p] for p in rng.random(1000).tolist()]
    profile = build_profile(features, predictions, sample_size=200, seed=3)

    _assert_plain_json(profile)
    assert json.loads(json.dumps(profile, allow_nan=False)) == profile
    assert profile["version"] == 1 and profile["rows"] == 1000

    income = profile["features"]["income"]
    assert income["kind"] == "numeric" and income["count"] == 998
    assert len(income["sample"]) == 200
    assert len(income["fractions"]) == len(income["edges"]) + 1 == 10
    assert sum(income["fractions"]) == pytest.approx(1.0)
    q = income["quantiles"]
    assert q["p01"] < q["p05"] < q["p25"] < q["p50"] < q["p75"] < q["p95"] < q["p99"]

    assert profile["features"]["member"]["kind"] == "numeric"
    assert 0.0 < profile["features"]["member"]["mean"] < 1.0
    city = profile["features"]["city"]
    assert city["kind"] == "categorical" and len(city["fractions"]) == 21
    assert OTHER in city["fractions"]
    assert sum(city["fractions"].values()) == pytest.approx(1.0)
    assert profile["features"]["empty"] == {"kind": "numeric", "count": 0}
    # Multi-output predictions are profiled by their first element.
    assert profile["prediction"]["kind"] == "numeric"
    assert profile["prediction"]["mean"] == pytest.approx(np.mean([p[0] for p in predictions]))


def test_profile_is_deterministic_given_the_seed() -> None:
    features = {"x": _normal(0, 3000), "y": _normal(1, 3000)}
    first = build_profile(features, None, seed=11)
    assert build_profile(features, None, seed=11) == first
    assert (
        build_profile(features, None, seed=12)["features"]["x"]["sample"]
        != (first["features"]["x"]["sample"])
    )
    # A feature's sample does not depend on which other features are profiled.
    alone = build_profile({"x": features["x"]}, None, seed=11)
    assert alone["features"]["x"] == first["features"]["x"]


@pytest.mark.parametrize("seed", SEEDS)
def test_psi_and_ks_quiet_for_a_fresh_sample_of_the_same_distribution(seed: int) -> None:
    reference = _reference()
    live = _normal(seed, 2000)
    assert psi(reference, live) < 0.02
    assert ks(reference, live)[1] > 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_psi_and_ks_flag_a_one_std_mean_shift(seed: int) -> None:
    reference = _reference()
    live = _normal(seed, 2000, mean=1.0)
    assert psi(reference, live) > 0.2
    statistic, pvalue = ks(reference, live)
    assert statistic > 0.2 and pvalue < 1e-6


def test_psi_is_zero_against_itself_and_symmetric_formula() -> None:
    values = _normal(0, 5000)
    reference = build_profile({"x": values}, None)["features"]["x"]
    assert psi(reference, values) == pytest.approx(0.0, abs=1e-12)
    # Everything in one bin: a known value of sum((a - e) * ln(a / e)).
    edges = reference["edges"]
    live = [edges[-1] + 1.0] * 100
    e = np.maximum(reference["fractions"], 1e-4)
    a = np.maximum([0.0] * (len(edges)) + [1.0], 1e-4)
    assert psi(reference, live) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))


def test_categorical_psi_detects_a_changed_mix() -> None:
    colours = ["red", "green", "blue"]
    reference = build_profile({"colour": _choices(0, 3000, colours, [0.5, 0.3, 0.2])}, None)[
        "features"
    ]["colour"]
    same = _choices(1, 2000, colours, [0.5, 0.3, 0.2])
    changed = _choices(2, 2000, colours, [0.2, 0.3, 0.5])
    unseen = ["purple"] * 2000
    assert psi(reference, same) < 0.02
    assert psi(reference, changed) > 0.2
    assert psi(reference, unseen) > 1.0
    # Unseen values count as "__other__", which the reference never had: the exact PSI.
    halves = build_profile({"v": ["a", "b"] * 50}, None)["features"]["v"]
    eps = 1e-4
    expected = (1 - eps) * math.log(1 / eps) + 2 * (eps - 0.5) * math.log(eps / 0.5)
    assert psi(halves, ["c"] * 10, epsilon=eps) == pytest.approx(expected)
    with pytest.raises(ValueError):
        ks(reference, same)
    with pytest.raises(ValueError):
        prediction_shift(reference, same)


def test_prediction_shift() -> None:
    rng = np.random.default_rng(0)
    preds = rng.normal(10.0, 2.0, 3000).tolist()
    reference = build_profile({}, preds)["prediction"]
    assert prediction_shift(reference, rng.normal(10.0, 2.0, 2000).tolist()) < 0.5
    shift = prediction_shift(reference, rng.normal(16.0, 2.0, 2000).tolist())
    assert shift > 2.0 and shift == pytest.approx(3.0, abs=0.2)
    # Multi-output live predictions use their first element.
    shifted = [[p, 0.0] for p in rng.normal(16.0, 2.0, 2000).tolist()]
    assert prediction_shift(reference, shifted) > 2.0


def test_constant_and_empty_features_do_not_crash() -> None:
    profile = build_profile(
        {"const": [3.0] * 200, "flag": [True] * 200, "empty": [], "nones": [None] * 200},
        [0.1] * 200,
    )
    const = profile["features"]["const"]
    assert const["std"] == 0.0 and const["edges"] == [3.0]
    assert const["fractions"] == [0.0, 1.0]
    assert psi(const, [3.0] * 100) == pytest.approx(0.0)
    assert psi(const, [2.0] * 100) > 1.0
    assert ks(const, [3.0] * 100)[1] == pytest.approx(1.0)
    assert profile["features"]["nones"] == {"kind": "numeric", "count": 0}

    empty = profile["features"]["empty"]
    assert psi(empty, [1.0, 2.0]) == 0.0
    assert ks(empty, [1.0, 2.0]) == (0.0, 1.0)
    assert prediction_shift(empty, [1.0]) == 0.0
    assert psi(const, []) == 0.0

    prediction = profile["prediction"]
    assert prediction_shift(prediction, [0.1] * 1000) == 0.0
    assert prediction_shift(prediction, [0.2] * 10) == math.inf

    rows = [{"const": 3.0, "flag": True, "empty": 1.0, "nones": 2.0} for _ in range(100)]
    report = feature_drift(profile, rows)
    assert set(report) == {"const", "flag"}
    assert not any(r["drifted"] for r in report.values())
    assert build_profile({}, None) == {"version": 1, "features": {}, "prediction": None, "rows": 0}


def _rows(seed: int, n: int, shift: float) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"a": float(a), "b": float(b), "c": str(c)}
        for a, b, c in zip(
            rng.normal(0, 1, n),
            rng.normal(5 + shift, 2, n),
            rng.choice(["x", "y", "z"], size=n),
            strict=True,
        )
    ]


def test_feature_drift_flags_exactly_the_shifted_feature() -> None:
    reference_rows = _rows(0, 3000, shift=0.0)
    profile = build_profile({k: [r[k] for r in reference_rows] for k in "abc"}, None)

    assert feature_drift(profile, _rows(1, 49, shift=2.0)) == {}

    live = _rows(1, 1000, shift=2.0)  # b moves by one of its standard deviations
    live[0] = {"a": None, "c": "x"}  # missing values are ignored, not an error
    report = feature_drift(profile, live)
    assert set(report) == {"a", "b", "c"}
    assert [name for name, r in report.items() if r["drifted"]] == ["b"]
    assert report["b"]["psi"] > 0.2 and report["b"]["ks_pvalue"] < 0.01
    assert set(report["c"]) == {"psi", "drifted"}
    assert set(report["a"]) == {"psi", "ks_statistic", "ks_pvalue", "drifted"}
    assert all(type(r["drifted"]) is bool for r in report.values())

    quiet = feature_drift(profile, _rows(2, 1000, shift=0.0))
    assert not any(r["drifted"] for r in quiet.values())

    # Drift needs both signals on a numeric feature: either threshold alone is not enough.
    assert not feature_drift(profile, live, psi_threshold=100.0)["b"]["drifted"]
    assert not feature_drift(profile, live, ks_pvalue=0.0)["b"]["drifted"]
    assert feature_drift(profile, live, psi_threshold=100.0)["c"]["drifted"] is False
    assert feature_drift(profile, live, psi_threshold=-1.0)["c"]["drifted"] is True


def test_quantile_interpolates_linearly() -> None:
    assert quantile([], 0.95) == 0.0
    assert quantile([5.0], 0.95) == 5.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert quantile(list(range(101)), 0.95) == pytest.approx(95.0)
    assert quantile([10.0, 0.0, 20.0], 1.0) == 20.0
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)
