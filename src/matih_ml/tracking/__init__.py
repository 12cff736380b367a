"""Experiment tracking: tenant-tagged runs on MLflow."""

from matih_ml.tracking.tracker import (
    ActiveRun,
    ExperimentTracker,
    RunConfig,
    get_experiment_tracker,
)

__all__ = ["ActiveRun", "ExperimentTracker", "RunConfig", "get_experiment_tracker"]
