"""MLflow's check that a PyTorch pt2 archive carries no pickle payload (private API)."""

from __future__ import annotations


def check_pt2_archive_is_pickle_free(path: str) -> None:
    """Raise if the pt2 archive at ``path`` carries pickle payloads (any doubt raises)."""
    from mlflow.pytorch import _validate_pt2_archive_is_pickle_free

    _validate_pt2_archive_is_pickle_free(path)
