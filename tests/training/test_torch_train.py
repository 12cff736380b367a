"""The PyTorch MLP trainer on a real local Ray Train (V2) with real torch DDP over gloo."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from matih_ml.job_spec import JobSpec, validate_job
from matih_ml.training.estimators import score
from matih_ml.training.torch_train import TorchOutcome, TrainingCancelled, train_torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # A linear boundary, string labels (so classes_ is exercised), features on
    # different scales (so the baked-in standardisation matters).
    rng = np.random.default_rng(11)
    x = rng.normal(size=(500, 6)) * [1, 10, 0.1, 1, 5, 1] + [0, 50, 0, -3, 0, 0]
    z = x[:, 0] - 0.1 * (x[:, 1] - 50) + 10 * x[:, 2]
    y = np.where(z > 0, "churn", "stay")
    return x[:400], y[:400], x[400:], y[400:]


def mlp_job(epochs: int, workers: int = 2) -> JobSpec:
    return validate_job(
        {
            "name": "nightly",
            "model_name": "churn",
            "trainer": {
                "kind": "pytorch",
                "model": "mlp",
                "hidden": [16],
                "epochs": epochs,
                "lr": 0.05,
                "batch_size": 32,
            },
            "data": {"kind": "table", "path": "churn.csv", "target": "label", "seed": 3},
            "resources": {"num_workers": workers},
            "evaluation": {"primary_metric": "accuracy"},
        }
    )


def train_worker_processes() -> list[psutil.Process]:
    """This test process's Ray Train workers (its Ray is its child: no other Ray's)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()) and proc.status() != "zombie":
                found.append(proc)
        except psutil.Error:
            continue
    return found


def check_model(outcome: TorchOutcome, x_hold: np.ndarray, y_hold: np.ndarray) -> None:
    assert score("accuracy", outcome.predictor, x_hold, y_hold) > 0.85
    assert list(outcome.predictor.classes_) == ["churn", "stay"]
    with torch.no_grad():
        proba = outcome.module(torch.as_tensor(x_hold, dtype=torch.float32)).numpy()
    assert proba.shape == (len(x_hold), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_classifier_trains_checkpoints_and_serves(local_ray, data, tmp_path: Path):
    import mlflow.pyfunc
    import mlflow.pytorch

    x, y, x_hold, y_hold = data
    seen: list[tuple[int, dict[str, float]]] = []
    storage = tmp_path / "training-checkpoints"
    outcome = train_torch(
        mlp_job(epochs=5),
        x,
        y,
        classifier=True,
        storage_path=str(storage),
        run_name="job-1",
        on_epoch=lambda e, m: seen.append((e, m)),
    )
    assert outcome.epochs_run == 5
    assert (outcome.restarts, outcome.resumed_from) == (0, [])
    assert [e for e, _ in seen] == [1, 2, 3, 4, 5]
    assert all(m["attempt"] == 1.0 and 0 <= m["val_accuracy"] <= 1 for _, m in seen)
    assert all(m["loss"] > 0 for _, m in seen)
    # The last checkpoint is under the run's directory, and only the last two are kept.
    last = Path(outcome.checkpoint_path)
    assert last.parent == storage / "job-1" and (last / "state.pt").is_file()
    kept = [p for p in (storage / "job-1").glob("checkpoint_*") if p.is_dir()]
    assert len(kept) == 2 and last in kept

    check_model(outcome, x_hold, y_hold)
    # pyfunc serving takes a DataFrame of raw float32 features, in MLflow 3's traced
    # 'pt2' format (export needs an example) and in the pickled one.
    frame = pd.DataFrame(x_hold.astype(np.float32), columns=[f"f{i}" for i in range(6)])
    expected = outcome.predictor.predict_proba(x_hold)
    for fmt, example in (("pt2", frame.to_numpy()[:5]), ("pickle", None)):
        path = tmp_path / f"model-{fmt}"
        mlflow.pytorch.save_model(
            outcome.module,
            path,
            serialization_format=fmt,
            input_example=example,
            pip_requirements=["torch"],  # no requirement inference: it loads the model
        )
        proba = np.asarray(mlflow.pyfunc.load_model(str(path)).predict(frame))
        np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)


def test_a_killed_worker_resumes_from_its_checkpoint(local_ray, data, tmp_path: Path):
    x, y, x_hold, y_hold = data
    seen: list[tuple[int, dict[str, float]]] = []
    reached = threading.Event()
    box: dict[str, object] = {}

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        seen.append((epoch, metrics))
        if epoch >= 2:
            reached.set()

    def run() -> None:
        try:
            box["outcome"] = train_torch(
                mlp_job(epochs=10),  # time to kill a worker after the second epoch
                x,
                y,
                classifier=True,
                storage_path=str(tmp_path / "ckpt"),
                run_name="job-2",
                on_epoch=on_epoch,
            )
        except BaseException as exc:  # noqa: BLE001 - the test thread reports, never dies
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert reached.wait(120), f"no second epoch: {box.get('error')!r}"
    workers = train_worker_processes()
    assert len(workers) == 2, workers
    workers[1].kill()  # SIGKILL: no cleanup, as when a node's OOM killer strikes
    thread.join(180)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    outcome = box["outcome"]
    assert isinstance(outcome, TorchOutcome)
    assert outcome.epochs_run == 10
    assert outcome.restarts >= 1
    # on_epoch(2) came after epoch 2's checkpoint was committed: no resume from scratch.
    assert outcome.resumed_from[0] >= 2
    # What the restarted workers reported agrees: they went on after the checkpoint.
    second = [e for e, m in seen if m["attempt"] == 2.0]
    assert second and second[0] == outcome.resumed_from[0] + 1, seen
    assert {e for e, _ in seen} == set(range(1, 11))
    check_model(outcome, x_hold, y_hold)


def test_should_stop_cancels_promptly(local_ray, data, tmp_path: Path):
    # One worker: the spec's default, and the path without DDP.
    x, y, _, _ = data
    seen: list[int] = []
    stop_at: list[float] = []

    def should_stop() -> bool:
        if seen and not stop_at:
            stop_at.append(time.monotonic())
        return bool(seen)

    with pytest.raises(TrainingCancelled):
        train_torch(
            mlp_job(epochs=200, workers=1),
            x,
            y,
            classifier=True,
            storage_path=str(tmp_path / "ckpt"),
            run_name="job-3",
            on_epoch=lambda e, m: seen.append(e),
            should_stop=should_stop,
        )
    assert max(seen) < 10, seen
    assert time.monotonic() - stop_at[0] < 20


def test_a_pytorch_job_logs_each_epoch_live_checkpoints_under_the_tenant_and_registers(
    services, tenant, tmp_path, local_ray, data
) -> None:
    from matih_ml.training.runner import _baseline_score, run_job

    x_train, y_train, x_test, y_test = data
    frame = pd.DataFrame(np.vstack([x_train, x_test]), columns=[f"f{i}" for i in range(6)])
    frame["label"] = np.concatenate([y_train, y_test])
    frame.to_csv(tmp_path / "churn.csv", index=False)
    spec = mlp_job(epochs=4)

    result = run_job(services, tenant, spec, data_root=tmp_path, actor="torch-user")

    assert result.status == "registered", result.reason
    assert result.value is not None and result.value > 0.85
    assert result.info["epochs_run"] == 4 and result.info["restarts"] == 0
    root = services.tenants.tenant_artifact_root(tenant)
    assert result.info["checkpoint_path"].startswith(f"{root}/training-checkpoints/")
    assert any(Path(result.info["checkpoint_path"]).iterdir())
    history = services.runs.metric_history(tenant, result.parent_run_id, "loss").items
    assert [m.step for m in history] == [1, 2, 3, 4]
    version = services.registry.get_version(tenant, "churn", result.registered_version)
    assert version.framework == "pytorch"
    # The registered module, loaded back as production would be, scores the same.
    holdout = frame.iloc[:100, :6]
    again = _baseline_score(
        services, tenant, spec, result.registered_version, holdout, frame["label"][:100]
    )
    assert again > 0.85


def test_checkpoints_go_to_s3_in_the_production_profile(local_ray, data, s3_server) -> None:
    from matih_ml.training.data import table_filesystem

    client = s3_server.client()
    client.create_bucket(Bucket="artifacts")
    root = "s3://artifacts/acme/training-checkpoints"
    filesystem, _ = table_filesystem(root)
    x_train, y_train, _, _ = data

    out = train_torch(
        mlp_job(epochs=2, workers=1),
        x_train,
        y_train,
        classifier=True,
        storage_path=root,
        storage_filesystem=filesystem,
        run_name="job_s3",
    )

    assert out.checkpoint_path.startswith("s3://artifacts/acme/training-checkpoints/job_s3")
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket="artifacts", Prefix="acme/")["Contents"]
    ]
    assert any(
        k.startswith("acme/training-checkpoints/job_s3/") and k.endswith(".pt") for k in keys
    ), keys
