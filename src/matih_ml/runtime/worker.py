"""The sandbox worker: loads and scores code-bearing models, one tenant per process.

It runs under bubblewrap (:mod:`matih_ml.runtime.sandbox`) as ``python -I worker.py``
and imports nothing of ``matih_ml``: the sandbox shows it the Python environment and the
tenant's model folders, not the service's source, databases or settings. It is also
imported by the service for :func:`to_json`, so that both sides convert model output
the same way; nothing runs on import.

Protocol: frames of a 4-byte big-endian length and a UTF-8 JSON object, requests on
stdin, answers on stdout. The model's own prints go to stderr. Every answer is
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import traceback
from collections import OrderedDict
from typing import Any, BinaryIO

MAX_FRAME = 256 << 20


def to_json(out: Any) -> list[Any]:
    """A model's output as plain JSON values, one per input row.

    Handles numpy arrays and scalars, pandas frames and series, dicts of columns,
    lists of dicts (onnxruntime's ZipMap), strings and bytes; non-finite floats
    become ``None`` (JSON has no NaN).
    """
    import numpy as np
    import pandas as pd

    if isinstance(out, pd.DataFrame):
        if out.shape[1] == 1:
            return [_plain(v) for v in out.iloc[:, 0].tolist()]
        return [_plain(row) for row in out.to_numpy().tolist()]
    if isinstance(out, pd.Series):
        return [_plain(v) for v in out.tolist()]
    if isinstance(out, np.ndarray):
        return [_plain(v) for v in out.tolist()] if out.ndim else [_plain(out.item())]
    if isinstance(out, dict):
        columns = {str(k): list(v) if _is_seq(v) else [v] for k, v in out.items()}
        return [
            {k: _plain(v) for k, v in zip(columns, row, strict=True)}
            for row in zip(*columns.values(), strict=True)
        ]
    if isinstance(out, (str, bytes)) or not _is_seq(out):
        return [_plain(out)]
    return [_plain(v) for v in out]


def _is_seq(value: Any) -> bool:
    return hasattr(value, "__iter__") and not isinstance(value, (str, bytes, dict))


def _plain(value: Any) -> Any:
    """One value as JSON: numpy scalars unwrapped, containers converted, NaN as None."""
    import numpy as np

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# --------------------------------------------------------------------------- framing


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """One JSON frame, or None at end of stream."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the limit")
    body = stream.read(size)
    if len(body) < size:
        return None
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("a frame must hold a JSON object")
    return value


def encode_frame(value: dict[str, Any]) -> bytes:
    """A JSON object as one frame."""
    body = json.dumps(value, allow_nan=False).encode()
    return struct.pack(">I", len(body)) + body


# --------------------------------------------------------------------------- operations


class _Worker:
    # A tenant's worker lives long: it keeps the versions it scored last, not all of them
    # (the service's cache decides what is served; a version asked for again reloads).
    MAX_MODELS = 8

    def __init__(self) -> None:
        self._models: OrderedDict[str, Any] = OrderedDict()

    def _model(self, path: str) -> Any:
        model = self._models.get(path)
        if model is None:
            import mlflow.pyfunc

            model = self._models[path] = mlflow.pyfunc.load_model(path)
            while len(self._models) > self.MAX_MODELS:
                self._models.popitem(last=False)
        self._models.move_to_end(path)
        return model

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "load":
            self._model(req["path"])
            return {"ok": True}
        if op == "predict":
            return {"ok": True, "predictions": self._predict(req)}
        if op == "example":
            return self._example(req)
        if op == "unpickle_sklearn":
            return _unpickle_sklearn(req)
        if op == "onnx_twin":
            return self._onnx_twin(req)
        return {"ok": False, "error": f"unknown operation {op!r}"}

    def _predict(self, req: dict[str, Any]) -> list[Any]:
        import numpy as np
        import pandas as pd

        model = self._model(req["path"])
        data = req["data"]
        if data["kind"] == "tensor":
            inputs: Any = np.asarray(data["values"], dtype=data.get("dtype", "float32"))
        else:
            inputs = pd.DataFrame(data["rows"], columns=data["columns"])
        return to_json(model.predict(inputs))

    def _example(self, req: dict[str, Any]) -> dict[str, Any]:
        """Predict on the model's stored input example (the staging gate, the profile)."""
        from mlflow.models import Model

        path = req["path"]
        model = self._model(path)
        example = Model.load(path).load_input_example(path)
        if example is None:
            return {"ok": True, "has_example": False}
        return {"ok": True, "has_example": True, "predictions": to_json(model.predict(example))}

    def _onnx_twin(self, req: dict[str, Any]) -> dict[str, Any]:
        """Convert the model's sklearn estimator to ONNX here, where unpickling it is safe;
        the service checks the graph it gets back before it trusts it."""
        from mlflow.models import Model

        path = req["path"]
        example = Model.load(path).load_input_example(path)
        if example is None:
            return {"ok": True, "skipped": "no input example is stored to check a twin on"}
        raw = self._model(path).get_raw_model()
        return {"ok": True, **sklearn_twin(raw, req["inputs"], example)}


def sklearn_twin(model: Any, inputs: list[list[Any]], example: Any) -> dict[str, Any]:
    """An sklearn classifier as ONNX (skl2onnx), and its own answers on ``example``.

    Run by the service on a model it may load (skops, trusted types only) and by the
    sandbox on any other, so that both convert the same way.

    Args:
        model: The estimator (a Pipeline ending in a classifier counts).
        inputs: The graph's inputs, ``[name, kind, width]``: one ``float`` input of
            every column, or one per column (``float``, ``int64`` or ``string``, width 1).
        example: The version's input example (a DataFrame or an array).

    Returns:
        ``{"onnx": base64 text, "labels": [...], "probabilities": [[...]] | None,
        "converter": "skl2onnx x.y"}``, or ``{"skipped": reason}`` for a model that is
        not a classifier.
    """
    import base64

    import numpy as np
    import skl2onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.base import is_classifier

    if not is_classifier(model):
        kind = type(model).__name__
        return {
            "skipped": f"a {kind} is not a classifier: only classifiers get a twin, whose "
            "labels can be checked equal (a float32 graph changes a regressor's digits)"
        }
    types = {"float": FloatTensorType, "int64": Int64TensorType, "string": StringTensorType}
    initial = [(name, types[kind]([None, width])) for name, kind, width in inputs]
    graph = skl2onnx.convert_sklearn(model, initial_types=initial, options={"zipmap": False})
    labels = to_json(model.predict(example))
    probabilities = None
    if hasattr(model, "predict_proba"):
        probabilities = np.asarray(model.predict_proba(example), dtype=np.float64).tolist()
    return {
        "onnx": base64.b64encode(graph.SerializeToString()).decode("ascii"),
        "labels": labels,
        "probabilities": probabilities,
        "converter": f"skl2onnx {skl2onnx.__version__}",
    }


class _NotForUploads:
    """Refuses imports of frameworks no sklearn upload needs.

    skops lists the types it trusts by importing every sklearn module, and sklearn's
    array-API shims then import torch and dask if present: a third of an upload worker's
    start-up. An sklearn model made of trusted types never needs them, and a pickle
    that asks for them is refused anyway.
    """

    ROOTS = ("torch", "dask", "jax", "cupy")

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".", 1)[0] in self.ROOTS:
            raise ImportError(f"{name} is not imported by the upload sandbox")


def _unpickle_sklearn(req: dict[str, Any]) -> dict[str, Any]:
    """Unpickle an uploaded sklearn model once, and save it as an MLflow skops model."""
    if not any(isinstance(f, _NotForUploads) for f in sys.meta_path):
        sys.meta_path.insert(0, _NotForUploads())
    import joblib
    import mlflow.sklearn
    import skops.io
    from sklearn.base import ClusterMixin, is_classifier, is_regressor

    with open(req["file"], "rb") as f:
        model = joblib.load(f)
    if not (hasattr(model, "fit") and (hasattr(model, "predict") or hasattr(model, "transform"))):
        return {"ok": False, "error": f"the file holds a {type(model).__name__}, not a model"}
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    trusted_roots = set(req["trusted_modules"])
    foreign = [t for t in untrusted if t.split(".", 1)[0] not in trusted_roots]
    if foreign:
        return {
            "ok": False,
            "error": f"the model holds types outside sklearn/numpy/scipy: {foreign}",
        }
    mlflow.sklearn.save_model(
        model,
        req["out"],
        serialization_format="skops",
        skops_trusted_types=untrusted or None,
        pip_requirements=req["requirements"],
    )
    kind = "unknown"
    if is_classifier(model):
        kind = "classification"
    elif is_regressor(model):
        kind = "regression"
    elif isinstance(model, ClusterMixin):
        kind = "clustering"
    return {"ok": True, "model_type": kind}


def main() -> None:
    """Serve requests until stdin closes."""
    # The protocol owns the original stdin and stdout; what the model prints goes to
    # stderr, so that it cannot corrupt the frames.
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = _Worker()
    while True:
        try:
            req = read_frame(requests)
        except ValueError as exc:
            answers.write(encode_frame({"ok": False, "error": str(exc)}))
            answers.flush()
            return
        if req is None:
            return
        try:
            answer = worker.handle(req)
        except Exception as exc:  # noqa: BLE001 - the model's failure is the answer
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        try:
            frame = encode_frame(answer)
        except ValueError as exc:
            frame = encode_frame({"ok": False, "error": f"the answer is not JSON: {exc}"})
        answers.write(frame)
        answers.flush()


if __name__ == "__main__":
    main()
