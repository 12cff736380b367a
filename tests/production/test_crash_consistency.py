"""Crash consistency on the embedded default: SIGKILL a replica at named cut points of a
promotion and a registration, and check that the other replica settles what was left and
that all tell one consistent story afterwards.

`make test` kills at three points a run (a promotion's, a registration's and one more,
drawn from a seed that changes daily and is printed; PostgreSQL's harness cuts at every
point each run); `make crash` kills at every point twice, then at random."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import embedded_settings
from matih_ml.crashpoints import POINTS
from production.crash import RANDOM_CUTS, REPEATS, Harness, crash_seed, kill_points, run_cuts


@pytest.fixture
def embedded_harness(tmp_path) -> Iterator[Harness]:
    data = tmp_path / "data"
    h = Harness(tmp_path, {"MATIH_DATA_DIR": str(data)}, embedded_settings(data), replicas=3)
    try:
        yield h
    finally:
        h.close()


@pytest.mark.slow
def test_sigkill_at_cut_points_leaves_one_consistent_story_on_sqlite(
    embedded_harness: Harness, saved_sklearn_model: Path
) -> None:
    points = kill_points(crash_seed())
    assert set(points) <= set(POINTS) and len(points) >= 2
    run_cuts(embedded_harness, saved_sklearn_model, kill=True, points=points)
    # Each cut killed a replica, which started again.
    kills = len(points) * REPEATS + RANDOM_CUTS
    assert embedded_harness.starts == len(embedded_harness.replicas) + kills
