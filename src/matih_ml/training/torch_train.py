"""The built-in PyTorch MLP trainer: DDP on Ray Train workers, a checkpoint every epoch.

A killed worker costs at most the epoch in flight: Ray Train restarts the worker group and
each worker resumes from the last committed checkpoint. Workers cannot reach the tracker,
so rank 0 hands each epoch's metrics to a small coordinator actor that a driver thread
drains; the same actor carries the driver's stop request to the workers.
Needs Ray Train V2 (the default in Ray 2.60): its controller takes one report per
poll, so ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` bounds how fast short epochs can go.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from matih_ml.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow.fs

    from matih_ml.job_spec import JobSpec

VALIDATION_FRACTION = 0.1
_PARAMS = frozenset({"weight_decay"})
_STATE_FILE = "state.pt"


class TrainingCancelled(Exception):
    """``should_stop`` asked for it: the workers stopped at an epoch boundary."""


class _Served(nn.Module):
    """Raw float32 features in, class probabilities (or a 1-D value) out: the
    standardisation is baked in, so pyfunc serving needs nothing but the features."""

    x_mean: torch.Tensor  # buffers: saved with the weights, moved with the module
    x_std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(self, net: nn.Module, stats: dict[str, np.ndarray], classifier: bool) -> None:
        super().__init__()
        self.net, self.classifier = net, classifier
        for name, value in stats.items():
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net((x.float() - self.x_mean) / self.x_std)
        if self.classifier:
            return torch.softmax(out, dim=1)
        return out[:, 0] * self.y_std + self.y_mean


class TorchPredictor:
    """What :func:`~matih_ml.training.estimators.score` needs: ``predict`` and, for a
    classifier, ``predict_proba`` and ``classes_`` (sorted like ``np.unique``)."""

    def __init__(self, module: nn.Module, classes: np.ndarray | None) -> None:
        self.module, self.classes_ = module, classes

    def predict_proba(self, x: Any) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()

    def predict(self, x: Any) -> np.ndarray:
        out = self.predict_proba(x)  # a regressor's module returns its values
        return out if self.classes_ is None else self.classes_[out.argmax(axis=1)]


@dataclass
class TorchOutcome:
    """A finished run.

    Attributes:
        module: The model to register (CPU, eval mode): raw features in, probabilities
            (one column per class) or a 1-D value out.
        predictor: ``predict`` (and ``predict_proba`` and ``classes_`` for a classifier).
        epochs_run: Epochs completed.
        restarts: How many times the worker group restarted after a failure.
        resumed_from: The checkpointed epoch each restart resumed from.
        checkpoint_path: The last checkpoint, under the storage path.
    """

    module: nn.Module
    predictor: Any
    epochs_run: int
    restarts: int
    resumed_from: list[int]
    checkpoint_path: str


class _Coordinator:
    """A Ray actor shared by the driver and rank 0: the attempts, the epochs' metrics not
    yet drained and the stop flag (one actor: each is a process to start)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.pending: list[tuple[int, dict[str, float]]] = []
        self.last, self.stop = 0, False

    def begin(self, epoch: int, metrics: dict[str, float] | None) -> int:
        # A worker killed between committing an epoch and sending its metrics: the
        # checkpoint carries them, so the epoch is not lost to the tracker.
        if metrics is not None and epoch > self.last:
            self.epoch_done(epoch, metrics)
        self.starts.append(epoch)
        return len(self.starts)

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        self.pending.append((epoch, metrics))
        self.last = max(self.last, epoch)

    def take(self) -> list[tuple[int, dict[str, float]]]:
        taken, self.pending = self.pending, []
        return taken

    def request_stop(self) -> None:
        self.stop = True

    def summary(self) -> tuple[list[int], bool]:
        return self.starts, self.stop


def _mlp(n_in: int, hidden: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


def _train_loop(cfg: dict[str, Any]) -> None:
    """One Ray Train worker: resume from the last checkpoint, then an epoch per report."""
    import ray
    import ray.train
    import torch.distributed as dist
    from ray.train.torch import prepare_model

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg["seed"])
    net = _mlp(cfg["x_fit"].shape[1], cfg["hidden"], cfg["n_out"])
    start, optim_state, last = 0, None, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / _STATE_FILE, weights_only=True)
        net.load_state_dict(state["model"])
        start, optim_state, last = state["epoch"], state["optimizer"], state["metrics"]
    model = prepare_model(net)  # DDP when world > 1: gradients are averaged across ranks
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if optim_state is not None:
        opt.load_state_dict(optim_state)
    coord = cfg["coordinator"]
    attempt = ray.get(coord.begin.remote(start, last)) if rank == 0 else 0
    classifier = cfg["classifier"]
    loss_fn: nn.Module = nn.CrossEntropyLoss() if classifier else nn.MSELoss()
    x, y = torch.from_numpy(cfg["x_fit"]), torch.from_numpy(cfg["y_fit"])
    x_val, y_val = torch.from_numpy(cfg["x_val"]), cfg["y_val"]
    for epoch in range(start, cfg["epochs"]):
        # The same permutation on every rank, padded to a multiple of the world size: the
        # shards are disjoint and equally long, so every rank runs as many DDP steps.
        perm = np.random.default_rng([cfg["seed"], epoch]).permutation(len(x))
        mine = torch.from_numpy(np.resize(perm, -(-len(x) // world) * world)[rank::world])
        model.train()
        total = 0.0
        for i in range(0, len(mine), cfg["batch_size"]):
            idx = mine[i : i + cfg["batch_size"]]
            out = model(x[idx])
            loss = loss_fn(out if classifier else out[:, 0], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        # Every rank must take the same branch (stop or go on), or DDP hangs in a collective.
        stop = rank == 0 and ray.get(coord.summary.remote())[1]
        agreed = torch.tensor([total, len(mine), stop], dtype=torch.float64)
        if dist.is_initialized():
            dist.all_reduce(agreed)
        if agreed[2] > 0:
            return
        metrics = {"loss": float(agreed[0] / agreed[1]), "attempt": float(attempt)}
        with tempfile.TemporaryDirectory() as d:
            saved = None
            if rank == 0:  # DDP keeps the ranks' weights equal: one copy is the model
                net.eval()
                with torch.no_grad():
                    pred = net(x_val).numpy()
                if classifier:
                    metrics["val_accuracy"] = float(np.mean(pred.argmax(axis=1) == y_val))
                else:
                    err = (pred[:, 0] - y_val) * cfg["y_std"]
                    metrics["val_rmse"] = float(np.sqrt(np.mean(err**2)))
                state = {"model": net.state_dict(), "optimizer": opt.state_dict()}
                state |= {"epoch": epoch + 1, "metrics": metrics}
                torch.save(state, Path(d) / _STATE_FILE)
                saved = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=saved)
        if rank == 0:
            # Wait for the controller to commit it: an epoch the tracker shows is one a
            # restart resumes after.
            ray.train.get_all_reported_checkpoints(
                consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED
            )
            ray.get(coord.epoch_done.remote(epoch + 1, metrics))


def _drain(
    coord: Any,
    on_epoch: Callable[[int, dict[str, float]], None],
    should_stop: Callable[[], bool],
    done: threading.Event,
    errors: list[BaseException],
) -> None:
    import ray

    stopping = False
    while True:
        finished = done.is_set()  # read first: the last take then holds every epoch
        try:
            for epoch, metrics in ray.get(coord.take.remote()):
                if not errors:
                    on_epoch(epoch, metrics)
            wants_stop = should_stop()
        except Exception as exc:  # noqa: BLE001 - re-raised by the driver once workers stop
            errors.append(exc)
            wants_stop = True
        if wants_stop and not stopping and not finished:
            ray.get(coord.request_stop.remote())
            stopping = True
        if finished:
            return
        done.wait(0.2)


def _prepare(
    x: np.ndarray, y: np.ndarray, classes: np.ndarray | None, seed: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The workers' standardised arrays, and the statistics the served module undoes."""
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(len(x) * VALIDATION_FRACTION))
    val, fit = perm[:n_val], perm[n_val:]
    x_mean, x_std = x[fit].mean(axis=0), x[fit].std(axis=0)
    x_std[x_std == 0] = 1.0  # a constant feature: centred, not blown up
    if classes is not None:
        y, y_mean, y_std = np.searchsorted(classes, y), 0.0, 1.0
    else:  # a standardised target keeps one learning rate sensible at any scale
        y = y.astype(np.float64)
        y_mean, y_std = float(y[fit].mean()), float(y[fit].std()) or 1.0
        y = ((y - y_mean) / y_std).astype(np.float32)
    x = ((x - x_mean) / x_std).astype(np.float32)
    arrays = {"x_fit": x[fit], "y_fit": y[fit], "x_val": x[val], "y_val": y[val], "y_std": y_std}
    stats = {"x_mean": x_mean, "x_std": x_std, "y_mean": y_mean, "y_std": y_std}
    return arrays, {k: np.asarray(v, dtype=np.float32) for k, v in stats.items()}


def train_torch(
    spec: JobSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    classifier: bool,
    storage_path: str,
    storage_filesystem: pyarrow.fs.FileSystem | None = None,
    run_name: str,
    on_epoch: Callable[[int, dict[str, float]], None] = lambda e, m: None,
    should_stop: Callable[[], bool] = lambda: False,
    max_failures: int = 2,
) -> TorchOutcome:
    """Train the job's MLP on Ray Train (Ray must be initialised) and return the model.

    Args:
        spec: A job whose trainer is ``pytorch``; ``trainer.params`` may set weight_decay.
        x_train: The training features (numeric).
        y_train: Labels for a classifier, float targets for a regressor.
        classifier: Cross-entropy on the labels, else MSE on the target.
        storage_path: Where checkpoints go: a local directory or ``s3://bucket/prefix``.
        storage_filesystem: The filesystem of ``storage_path``, if not the default.
        run_name: The run's directory under ``storage_path``; unique per job. A run
            directory that exists is resumed from its last checkpoint.
        on_epoch: Called from a driver thread with each epoch (1-based) and its metrics
            (loss, val_accuracy or val_rmse, attempt); an epoch re-run after a restart
            comes again.
        should_stop: Polled by the driver; True stops the workers at the next epoch end.
        max_failures: Worker group restarts allowed before the run fails.

    Raises:
        TrainingCancelled: When ``should_stop`` said so.
        ValidationError: On an unknown ``trainer.params`` key.
        ray.train.TrainingFailedError: When the workers failed more than ``max_failures``.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.constants import is_v2_enabled

    trainer = spec.trainer
    assert trainer.kind == "pytorch" and trainer.hidden and trainer.epochs
    assert trainer.lr is not None and trainer.batch_size is not None
    if not is_v2_enabled():
        raise RuntimeError("train_torch needs Ray Train V2: unset RAY_TRAIN_V2_ENABLED")
    unknown = sorted(trainer.params.keys() - _PARAMS)
    if unknown:
        raise ValidationError(
            f"trainer.params: unknown parameter {unknown[0]!r} for the pytorch MLP",
            details={"field": f"trainer.params.{unknown[0]}"},
        )
    x, y = np.asarray(x_train, dtype=np.float64), np.asarray(y_train)
    classes = np.unique(y) if classifier else None
    arrays, stats = _prepare(x, y, classes, spec.data.seed)
    n_out = 1 if classes is None else len(classes)
    coord: Any = ray.remote(num_cpus=0)(_Coordinator).remote()
    config = {
        **arrays,
        **trainer.model_dump(include={"hidden", "epochs", "lr", "batch_size"}),
        "weight_decay": float(trainer.params.get("weight_decay", 0.0)),
        "n_out": n_out,
        "classifier": classifier,
        "seed": spec.data.seed,
        "coordinator": coord,
    }
    # With a filesystem object Ray wants the path without its scheme.
    scheme, sep, rest = storage_path.partition("://")
    path = rest if sep and storage_filesystem is not None else storage_path
    res = spec.resources
    torch_trainer = TorchTrainer(
        _train_loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.num_workers,
            use_gpu=res.use_gpu,
            resources_per_worker={"CPU": res.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=path,
            storage_filesystem=storage_filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    done, errors = threading.Event(), list[BaseException]()
    drain = threading.Thread(
        target=_drain,
        args=(coord, on_epoch, should_stop, done, errors),
        name=f"torch-train-{run_name}",
        daemon=True,
    )
    drain.start()
    try:
        result = torch_trainer.fit()
    finally:
        done.set()
        drain.join()
        starts, stopped = ray.get(coord.summary.remote())
        ray.kill(coord)
    if errors:
        raise errors[0]
    if stopped:
        raise TrainingCancelled(f"training run {run_name!r} was cancelled")
    assert result.checkpoint is not None
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / _STATE_FILE, weights_only=True)
    net = _mlp(x.shape[1], list(trainer.hidden), n_out)
    net.load_state_dict(state["model"])
    module = _Served(net, stats, classifier).eval()
    checkpoint_path = result.checkpoint.path
    if sep and "://" not in checkpoint_path:
        checkpoint_path = f"{scheme}://{checkpoint_path.lstrip('/')}"
    return TorchOutcome(
        module=module,
        predictor=TorchPredictor(module, classes),
        epochs_run=int(state["epoch"]),
        restarts=max(0, len(starts) - 1),
        resumed_from=starts[1:],
        checkpoint_path=checkpoint_path,
    )
