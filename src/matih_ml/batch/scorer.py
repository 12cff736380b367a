"""The scoring actor: one version, loaded once per actor, scoring batches of rows.

Each Ray Data actor gets the version's files as bytes (so an actor on another node of a
cluster needs nothing from this host), checks and classifies them again itself, and loads
them as serving would: a data format (skops sklearn, ONNX, pickle-free pt2) in the actor's
process; a code-bearing model (pickles, a PythonModel, code) in a sandboxed worker of its
own (:class:`~matih_ml.runtime.sandbox.SandboxProcess`, the worker serving uses), so that
the tenant's code never runs in the actor. The driver has already refused a code-bearing
model the tenant's policy or the operator does not allow.

Each batch comes back as the key columns, the predictions and the version, and a few
sampled rows carry their input as JSON in :data:`SAMPLE` for the driver's drift sample.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matih_ml.batch_spec import MODEL_VERSION, PREDICTION
from matih_ml.runtime.files import UntrustedModelError, read_mlmodel
from matih_ml.runtime.formats import classify
from matih_ml.runtime.sandbox import MODELS_MOUNT, SandboxLimits, SandboxProcess

SAMPLE = "__matih_sample"
# Rows per request to a sandboxed worker: its answers are JSON, bounded in size.
_SANDBOX_ROWS = 2000


@dataclass(frozen=True)
class ModelInput:
    """How a batch becomes the model's input.

    Attributes:
        columns: The input columns passed, in this order.
        tensor_dtype: For a tensor signature, the array's dtype; None for a frame.
    """

    columns: list[str]
    tensor_dtype: str | None = None


def pack(folder: Path) -> bytes:
    """The model folder as a tar archive (symlinks as they are: the actor checks them)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(folder), arcname="model")
    return buffer.getvalue()


def prediction_columns(out: Any) -> dict[str, Any]:
    """A model's output as columns: ``prediction``, or ``prediction_<i>`` per output.

    Raises:
        ValueError: An output of more than two dimensions.
    """
    if isinstance(out, dict):  # a pyfunc's named outputs, in their order
        out = np.column_stack([np.asarray(v).reshape(len(np.asarray(v)), -1) for v in out.values()])
    elif isinstance(out, pd.DataFrame | pd.Series):
        out = out.to_numpy()
    array = np.asarray(out)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 1:
        return {PREDICTION: array}
    if array.ndim == 2:
        return {f"{PREDICTION}_{i}": array[:, i] for i in range(array.shape[1])}
    raise ValueError(f"the model answered a {array.ndim}-dimensional output per batch")


class Scorer:
    """A Ray Data actor's callable: loads the version once, then scores each batch.

    Args:
        files: A one-item list holding the object reference of :func:`pack`'s bytes (in a
            list, so that Ray hands the reference over rather than the bytes).
        model_input: The columns and the input's kind.
        key_columns: Copied to the output.
        version: Written in every row's ``model_version``.
        sandbox: The sandbox's limits; None when code-bearing models may not run.
        sample_rate: The share of rows whose input is sampled for drift monitoring.
    """

    def __init__(
        self,
        files: list[Any],
        model_input: ModelInput,
        key_columns: list[str],
        version: str,
        sandbox: SandboxLimits | None,
        sample_rate: float,
    ) -> None:
        import ray

        self._input = model_input
        self._keys = key_columns
        self._version = version
        self._rate = sample_rate
        self._rng = np.random.default_rng()
        self._dir = Path(tempfile.mkdtemp(prefix="matih-batch-model-"))
        self._worker: SandboxProcess | None = None
        with tarfile.open(fileobj=io.BytesIO(ray.get(files[0])), mode="r") as tar:
            tar.extractall(self._dir, filter="data")  # no links out, no devices
        folder = self._dir / "model"
        found = classify(folder)  # checks every path in the folder again
        self._raw: Any = None
        self._pyfunc: Any = None
        if found.in_process:
            from mlflow.pyfunc import load_model

            self._pyfunc = load_model(str(folder))
            if "sklearn" in self._pyfunc.metadata.flavors and model_input.tensor_dtype is None:
                # The estimator itself: the pyfunc wrapper re-checks the schema per call.
                self._raw = self._pyfunc.get_raw_model()
        elif sandbox is None:
            raise UntrustedModelError(
                f"This model carries code ({found.reasons[0]}), and the sandbox is off."
            )
        else:
            read_mlmodel(folder)  # the worker reads it too: fail here on a bad one
            self._worker = SandboxProcess(folder, sandbox)
            self._worker.call({"op": "load", "path": MODELS_MOUNT})

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Score one batch: the key columns, the predictions, the version (and samples)."""
        data = batch[self._input.columns]
        model_in: Any = data
        if self._input.tensor_dtype is not None:
            model_in = data.to_numpy(dtype=np.dtype(self._input.tensor_dtype))
        out = self._predict(model_in)
        frame = batch[self._keys].reset_index(drop=True)
        for name, values in prediction_columns(out).items():
            frame[name] = values
        frame[MODEL_VERSION] = self._version
        frame[SAMPLE] = self._sample(data)
        return frame

    def _predict(self, data: Any) -> Any:
        if self._raw is not None:
            return self._raw.predict(data)
        if self._pyfunc is not None:
            return self._pyfunc.predict(data)
        from matih_ml.runtime.loader import encode_input

        assert self._worker is not None
        answers: list[Any] = []
        for start in range(0, len(data), _SANDBOX_ROWS):
            chunk = data[start : start + _SANDBOX_ROWS]
            request = {"op": "predict", "path": MODELS_MOUNT, "data": encode_input(chunk)}
            predictions = self._worker.call(request).get("predictions")
            if not isinstance(predictions, list) or len(predictions) != len(chunk):
                raise ValueError("the sandboxed model answered no prediction per row")
            answers.extend(predictions)
        return np.asarray(answers, dtype=object if _ragged(answers) else None)

    def _sample(self, data: pd.DataFrame) -> list[str | None]:
        picked = self._rng.random(len(data)) < self._rate
        out: list[str | None] = [None] * len(data)
        if picked.any():
            rows = data[picked].astype(object).where(pd.notna(data[picked]), None)
            for i, record in zip(np.flatnonzero(picked), rows.to_dict("records"), strict=True):
                out[int(i)] = json.dumps(record, default=_plain)
        return out

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.kill()
        if hasattr(self, "_dir"):
            shutil.rmtree(self._dir, ignore_errors=True)


def _ragged(answers: list[Any]) -> bool:
    lengths = {len(a) if isinstance(a, list) else -1 for a in answers}
    return len(lengths) > 1


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
