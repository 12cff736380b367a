"""ONNX graphs scored by onnxruntime directly: the serving fast path.

One :class:`OnnxScorer` per loaded version holds one ``InferenceSession`` with the
service's own options (never the tenant's: :func:`open_session`), builds its feeds
straight from the request's JSON values, and turns every kind of output into JSON.

The answers keep the shape MLflow's ONNX pyfunc gives, which served these versions
before (``mlflow.onnx._OnnxModelWrapper`` followed by :func:`~.worker.to_json`):

- ``inputs`` (a tensor): one answer per row, an object of every output by name
  (``{"label": 1, "probabilities": {"0": 0.2, "1": 0.8}}``);
- ``records`` (columns): each output flattened to one value per row; one output gives
  a list of values, several give one list per row, in the graph's output order;
- a twin of an sklearn classifier (``labels_only``): its ``label`` output, as
  ``estimator.predict`` answers.

Where MLflow's wrapper raised (an int column into a float graph, ``[N]`` columns into
``[N, 1]`` inputs), the feed is cast or reshaped to what the graph declares instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from matih_ml.runtime.worker import to_json

# The operator sets of plain ONNX: what a twin may use. Anything else (a custom op
# library, onnxruntime's contrib ops, model-local functions) is refused for a twin.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"

_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxGraphRefusedError(ValueError):
    """A graph that is not plain ONNX (a twin must be)."""


def check_graph(data: bytes) -> None:
    """Check that ``data`` is a plain, self-contained ONNX model.

    Only the standard domains (``ai.onnx``, ``ai.onnx.ml``), no model-local functions,
    no external data, and ONNX's own checker passes.

    Raises:
        OnnxGraphRefusedError: Naming what is refused.
    """
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a refusal
        raise OnnxGraphRefusedError(f"not an ONNX model: {exc}"[:300]) from None
    domains = {imp.domain for imp in model.opset_import}
    if domains - STANDARD_DOMAINS:
        raise OnnxGraphRefusedError(f"operator sets outside ai.onnx(.ml): {sorted(domains)}")
    if len(model.functions):
        raise OnnxGraphRefusedError("the graph defines its own functions")
    for node in _nodes(model.graph):
        if node.domain not in STANDARD_DOMAINS:
            raise OnnxGraphRefusedError(f"node {node.op_type!r} is in domain {node.domain!r}")
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxGraphRefusedError(f"initializer {tensor.name!r} has external data")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - the checker's message is the reason
        raise OnnxGraphRefusedError(f"ONNX's checker refuses it: {exc}"[:300]) from None


def _nodes(graph: Any) -> Any:
    """Every node of ``graph`` and of its subgraphs (If, Loop, Scan bodies)."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)


def open_session(source: Path | bytes, threads: int) -> Any:
    """An ``InferenceSession`` on ``source`` with the service's options.

    The tenant's ``onnx_session_options`` are not used: ``threads`` intra-op threads
    (docs/decisions.md: one by default), one inter-op thread, sequential execution,
    no spinning, every graph optimisation, in memory only (no optimised-model file, no
    profile), on the CPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle pool threads spinning for work burn a core that the event loop and other
    # requests share (with one thread there is no pool to spin).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    target = str(source) if isinstance(source, Path) else source
    return ort.InferenceSession(target, sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class GraphInput:
    """One input of the graph, as the session declares it."""

    name: str
    dtype: Any  # a numpy dtype, or None for a type the fast path does not build
    rank: int | None


@dataclass(frozen=True)
class Feeds:
    """A session's inputs, built from a request, and which answer shape it expects."""

    values: dict[str, np.ndarray]
    kind: Literal["frame", "tensor"]


class OnnxScorer:
    """One version's session, its feeds and its answers.

    Args:
        session: An ``InferenceSession`` (:func:`open_session`).
        labels_only: Answer the ``label`` output alone (an sklearn classifier's twin).
    """

    def __init__(self, session: Any, *, labels_only: bool = False) -> None:
        self.session = session
        self.labels_only = labels_only
        self.inputs = [
            GraphInput(
                i.name,
                _DTYPES.get(i.type),
                len(i.shape) if isinstance(i.shape, list) else None,
            )
            for i in session.get_inputs()
        ]
        self.outputs = [o.name for o in session.get_outputs()]
        if labels_only and LABEL_OUTPUT not in self.outputs:
            raise OnnxGraphRefusedError(f"the graph has no {LABEL_OUTPUT!r} output")
        self._label = self.outputs.index(LABEL_OUTPUT) if labels_only else 0
        # The twin answers its label only: onnxruntime still computes what that needs.
        self._fetch = [LABEL_OUTPUT] if labels_only else None

    # ---------------------------------------------------------------- feeds

    def from_rows(self, rows: list[list[Any]], names: list[str]) -> Feeds | None:
        """Feeds from checked records' values, in ``names``' order; None when the graph's
        inputs are not the columns' (one ``[N, F]`` tensor, or one input per column)."""
        only = self.inputs[0]
        if len(self.inputs) == 1 and names != [only.name]:
            # One tensor of every column, in the signature's order.
            if only.dtype is None or only.rank not in (2, None):
                return None
            return Feeds({only.name: _array(rows, only.dtype)}, "frame")
        at = {n: i for i, n in enumerate(names)}
        values: dict[str, np.ndarray] = {}
        for graph_input in self.inputs:
            i = at.get(graph_input.name)
            if i is None or graph_input.dtype is None or graph_input.rank not in (1, 2):
                return None
            column = _array([row[i] for row in rows], graph_input.dtype)
            values[graph_input.name] = column.reshape(-1, 1) if graph_input.rank == 2 else column
        return Feeds(values, "frame")

    def from_frame(self, frame: Any) -> Feeds:
        """Feeds from a DataFrame, as MLflow's ONNX pyfunc builds them: one input takes
        the frame's values, several take a column each (by the input's name).

        Raises:
            KeyError: A column the graph needs is missing.
        """
        if len(self.inputs) == 1:
            only = self.inputs[0]
            return Feeds({only.name: _cast(frame.to_numpy(), only.dtype)}, "frame")
        values = {}
        for graph_input in self.inputs:
            column = _cast(frame[graph_input.name].to_numpy(), graph_input.dtype)
            values[graph_input.name] = column.reshape(-1, 1) if graph_input.rank == 2 else column
        return Feeds(values, "frame")

    def from_tensor(self, array: np.ndarray) -> Feeds:
        """Feeds from a tensor: the graph's only input takes it.

        Raises:
            ValueError: The graph has several inputs (as MLflow's pyfunc says).
        """
        if len(self.inputs) != 1:
            names = [i.name for i in self.inputs]
            raise ValueError(
                f"This model takes {len(names)} inputs {names}: send records with those "
                "columns, not one array."
            )
        only = self.inputs[0]
        return Feeds({only.name: _cast(array, only.dtype)}, "tensor")

    # ---------------------------------------------------------------- scoring

    def run(self, feeds: Feeds) -> list[Any]:
        """The session's raw outputs (all of them, or the label for a twin)."""
        return list(self.session.run(self._fetch, feeds.values))

    def predict(self, feeds: Feeds) -> list[Any]:
        """Score ``feeds``; JSON-ready predictions in the answer's shape (module doc)."""
        outputs = self.run(feeds)
        if self.labels_only:
            return to_json(outputs[0])
        if feeds.kind == "tensor":
            return to_json(dict(zip(self.outputs, outputs, strict=True)))
        if len(outputs) == 1:
            return to_json(np.asarray(outputs[0]).reshape(-1))
        import pandas as pd

        # Several outputs: MLflow's frame of one column per output, each flattened.
        return to_json(
            pd.DataFrame.from_dict(
                {
                    name: np.asarray(out).reshape(-1)
                    for name, out in zip(self.outputs, outputs, strict=True)
                }
            )
        )


def _array(values: list[Any], dtype: Any) -> np.ndarray:
    if dtype is np.object_:
        return np.array(values, dtype=object)
    return np.array(values, dtype=dtype)


def _cast(array: np.ndarray, dtype: Any) -> np.ndarray:
    if dtype is None or array.dtype == dtype:
        return array
    if dtype is np.object_:
        return array.astype(object)
    return array.astype(dtype)
