"""Crash consistency on PostgreSQL with S3: cut every database connection of the service
(``pg_terminate_backend``) at each named cut point of a promotion and a registration, and
check that the two replicas settle into one consistent story without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from matih_ml.config import Settings
from production.crash import Harness, run_cuts


@pytest.mark.slow
@pytest.mark.postgres
def test_connection_cuts_at_every_cut_point_leave_one_consistent_story_on_postgresql(
    stack, saved_sklearn_model: Path
) -> None:
    from production.stack import ROOT

    stack.upgrade()
    env = stack.env(MATIH_CRASH_MODE="cut-db", MATIH_CRASH_DB_URL=stack.direct_pg_url)
    settings = Settings(
        MLFLOW_TRACKING_URI=stack.direct_pg_url,
        MLFLOW_REGISTRY_URI=None,
        MLFLOW_ARTIFACT_ROOT=ROOT,
        MATIH_DATA_DIR=env["MATIH_DATA_DIR"],
    )
    h = Harness(stack.tmp_path, env, settings)
    try:
        run_cuts(h, saved_sklearn_model, kill=False)
        assert h.starts == 2  # the same two processes went through every cut
    finally:
        h.close()
