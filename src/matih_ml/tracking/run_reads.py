"""Moved to :mod:`matih_ml.mlflow_adapter.run_reads` (raw SQL on MLflow's tables lives in
the adapter). This name stays only for ``registry.service``, which imports it and is
being edited elsewhere; delete it once that import names the adapter."""

from matih_ml.mlflow_adapter.run_reads import RunSummary, summaries
from matih_ml.mlflow_adapter.stores import sql_engine

__all__ = ["RunSummary", "sql_engine", "summaries"]
