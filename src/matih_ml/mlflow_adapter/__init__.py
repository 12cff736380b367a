"""Everything that reaches into MLflow past its public API, in one package.

MLflow's private attributes (``MlflowClient._tracking_client`` and the stores behind
it), its schema functions (``mlflow.store.db.utils``), its internal workspace setter,
its other private helpers, and raw SQL on its tables (``runs``, ``metrics``,
``latest_metrics``, ``registered_models``...) are used here and nowhere else. An MLflow
upgrade that moves them breaks this package and its tests, not the whole service; the
rest of the service talks to MLflow through ``MlflowClient`` and its entities.

- :mod:`~matih_ml.mlflow_adapter.stores`: the client's stores, URIs and SQL engine.
- :mod:`~matih_ml.mlflow_adapter.workspace`: binding MLflow's workspace to a context.
- :mod:`~matih_ml.mlflow_adapter.schema`: MLflow's schema revision, creation, upgrade.
- :mod:`~matih_ml.mlflow_adapter.run_reads`, :mod:`~matih_ml.mlflow_adapter.model_reads`:
  many runs, or a page of models, read from MLflow's tables in a few queries (their
  lists of ids written per dialect by :mod:`~matih_ml.mlflow_adapter.in_list`).
- :mod:`~matih_ml.mlflow_adapter.bulk`, :mod:`~matih_ml.mlflow_adapter.rollup`,
  :mod:`~matih_ml.mlflow_adapter.downsample`: metric points written into MLflow's
  tables, their write-time summary, and charts read from either.
- :mod:`~matih_ml.mlflow_adapter.pytorch`: MLflow's check that a pt2 archive holds no
  pickle.

Every raw query here is confined by its caller's tenant: a workspace column in the SQL
itself, or a run the caller has checked is in the bound tenant first.

The one exception is the MLflow door (:mod:`matih_ml.api.mlflow`): it runs MLflow's own
Flask views under our authorization, so it uses MLflow's server handlers as they are.

Nothing is imported here: each module is imported by name, so that importing one does
not import the others (nor, through them, the registry).
"""
