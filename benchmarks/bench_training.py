"""A training job beside plain MLflow 3.17 doing the same work by hand.

- **Train and register**: read a 20,000 x 20 CSV, fit a LogisticRegression, score a
  holdout, log the run and register the model. Plain MLflow: ``start_run``, ``log_*``
  and ``mlflow.sklearn.log_model(registered_model_name=...)``. Ours: ``run_job``, which
  also scores production on the same holdout, writes the reference profile, publishes the
  events and moves the version to staging through the gates.
- **Tuning**: 8 trials of 5 rounds on a local Ray (2 CPUs). Ours logs every trial as a
  nested run as it reports; the ratio is against the bare ``Tuner.fit`` of the same
  search, so it is what the bookkeeping costs.

Run with ``make bench``; docs/performance.md records the figures.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

ROWS, FEATURES, REPEATS = 20_000, 20, 3


def _table(folder: Path) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES))
    y = (x[:, 0] - x[:, 1] + rng.normal(0, 0.5, ROWS) > 0).astype(int)
    path = folder / "churn.csv"
    pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)]).assign(label=y).to_csv(
        path, index=False
    )
    return path


def _body(name: str, tuning: dict | None = None) -> dict:
    body = {
        "name": name,
        "model_name": name,
        "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
        "data": {"kind": "table", "path": "churn.csv", "target": "label"},
        "evaluation": {"primary_metric": "accuracy"},
    }
    if tuning:
        body["tuning"] = tuning
    return body


def plain_mlflow(folder: Path, table: Path, i: int, pinned: bool = False) -> float:
    """By hand; ``pinned`` gives log_model its requirements, as our registry does, instead
    of letting MLflow infer them in a subprocess (its default, and most of its time)."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'plain.db'}")
    start = time.perf_counter()
    frame = pd.read_csv(table)
    x, y = frame.drop(columns="label"), frame["label"]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    model = LogisticRegression().fit(x_tr, y_tr)
    acc = accuracy_score(y_te, model.predict(x_te))
    mlflow.set_experiment("plain")
    with mlflow.start_run():
        mlflow.log_params(model.get_params())
        mlflow.log_metric("accuracy", acc)
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=f"plain{i}",
            input_example=x_te[:200],
            pip_requirements=["scikit-learn", "numpy"] if pinned else None,
        )
    return time.perf_counter() - start


def ours(services, tenant: str, root: Path, i: int, tuning: dict | None = None) -> float:
    from matih_ml.job_spec import validate_job
    from matih_ml.training.runner import run_job

    spec = validate_job(_body(f"job{i}", tuning))
    start = time.perf_counter()
    result = run_job(services, tenant, spec, data_root=root)
    assert result.status == "registered", result.reason
    return time.perf_counter() - start


def bare_tune(table: Path, tuning: dict) -> float:
    import numpy as np
    import pandas as pd

    from matih_ml.job_spec import validate_job
    from matih_ml.training.tuning import tune_job

    spec = validate_job(_body("bare", tuning))
    frame = pd.read_csv(table)
    start = time.perf_counter()
    tune_job(spec, frame.drop(columns="label").astype(float), np.asarray(frame["label"]), True)
    return time.perf_counter() - start


def main() -> None:
    import ray

    from matih_ml.config import Settings
    from matih_ml.services import build_services

    with tempfile.TemporaryDirectory(prefix="matih-bench-train-") as tmp:
        folder = Path(tmp)
        settings = Settings(
            MATIH_DATA_DIR=str(folder / "data"),
            MLFLOW_TRACKING_URI=None,
            MLFLOW_ARTIFACT_ROOT=None,
            MATIH_AUTO_CREATE_TENANTS=True,
        )
        root = Path(settings.tenant_data_root("bench"))
        root.mkdir(parents=True)
        table = _table(root)
        # Plain MLflow first: our services put MLflow in workspace mode for the process.
        plain_mlflow(folder, table, 99)  # warm imports
        p = [plain_mlflow(folder, table, i) for i in range(REPEATS)]
        pp = [plain_mlflow(folder, table, 50 + i, pinned=True) for i in range(REPEATS)]
        services = build_services(settings)
        tenant = services.tenants.create_tenant("bench").tenant_id
        ours(services, tenant, root, 99)
        o = [ours(services, tenant, root, i) for i in range(REPEATS)]
        pm, ppm, om = statistics.median(p), statistics.median(pp), statistics.median(o)
        print(
            f"train+register: plain MLflow {pm * 1000:.0f} ms ({ppm * 1000:.0f} ms with pinned "
            f"requirements), ours {om * 1000:.0f} ms ({om / pm:.2f}x, {om / ppm:.2f}x pinned; "
            "ours includes the baseline, profile, events and staging)"
        )

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            tuning = {
                "search_space": {"C": {"loguniform": [0.001, 10.0]}},
                "num_samples": 8,
                "metric": "accuracy",
                "mode": "max",
                "scheduler": "asha",
            }
            bare_tune(table, tuning)  # warm the workers
            b = statistics.median(bare_tune(table, tuning) for _ in range(REPEATS))
            t = statistics.median(
                ours(services, tenant, root, 10 + i, tuning) for i in range(REPEATS)
            )
            print(
                f"tuning, 8 trials: bare Tuner.fit {b:.2f} s, our job {t:.2f} s "
                f"({t / b:.2f}x, with nested runs logged live, refit and registration)"
            )
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
