"""Crash consistency on the embedded default: SIGKILL a replica at each named cut point
of a promotion and a registration (once each; `make crash`: twice each, then at random),
and check that the other replica settles what was left and that both tell one consistent
story afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import embedded_settings
from matih_ml.crashpoints import POINTS
from production.crash import REPEATS, Harness, run_cuts


@pytest.fixture
def embedded_harness(tmp_path) -> Iterator[Harness]:
    data = tmp_path / "data"
    h = Harness(tmp_path, {"MATIH_DATA_DIR": str(data)}, embedded_settings(data), replicas=3)
    try:
        yield h
    finally:
        h.close()


@pytest.mark.slow
def test_sigkill_at_every_cut_point_leaves_one_consistent_story_on_sqlite(
    embedded_harness: Harness, saved_sklearn_model: Path
) -> None:
    run_cuts(embedded_harness, saved_sklearn_model, kill=True)
    assert embedded_harness.starts > len(POINTS) * REPEATS  # each cut killed a replica
