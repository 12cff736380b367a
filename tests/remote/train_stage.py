"""A pipeline's training stage: log a run with the SDK against a matih-ml server (only
``MATIH_URL`` and ``MATIH_API_KEY``), with a small sklearn model under ``model/``, and
write the run id file the registration stage reads. It trains on ``data/prepared.csv``
(the data stage's output) when there is one.

    python train_stage.py [RUN_ID_FILE [MODEL_NAME]]

(by default ``data/models/run_id.json`` and ``churn``, as docs/dvc.md's pipeline has
it). The DVC tests copy it into their folders as ``train.py``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import mlflow.sklearn
import numpy as np
from sklearn.linear_model import LogisticRegression

from matih_ml.client import MatihClient
from matih_ml.tracking.tracker import ExperimentTracker, RunConfig


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/models/run_id.json")
    model_name = sys.argv[2] if len(sys.argv) > 2 else "churn"
    prepared = Path("data/prepared.csv")
    if prepared.exists():  # the data stage's output (prepare_stage.py)
        table = np.loadtxt(prepared, delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(int)
    else:
        rng = np.random.default_rng(3)
        x = rng.normal(size=(100, 4))
        y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    with MatihClient() as ml:
        tenant = ml.whoami().tenant_id
    config = RunConfig(tenant_id=tenant, user_id="pipeline", run_name="train")
    tracker = ExperimentTracker()  # MATIH_URL and MATIH_API_KEY
    with tracker.start_run("pipeline", run_config=config) as run:
        run.log_params({"C": 1.0})
        for step in range(100):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metric("accuracy", float(model.score(x, y)))
        # The model's files go up from a temporary folder: the stage's only output is
        # the run id file.
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.sklearn.save_model(model, f"{tmp}/model")
            run.log_artifact(f"{tmp}/model", "model")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run_id": run.run_id, "model_name": model_name}) + "\n")
    print(f"logged run {run.run_id}")


if __name__ == "__main__":
    main()
