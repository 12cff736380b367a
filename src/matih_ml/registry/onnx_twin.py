"""An sklearn classifier's ONNX twin, made and checked when its version is registered.

Serving scores a version with onnxruntime when it can (:mod:`matih_ml.runtime.onnx_session`):
an ONNX version directly, and an sklearn classifier through a twin that skl2onnx made of
it here, used only if it answered the input example as the estimator does (the same
labels, probabilities within :data:`PROBABILITY_TOLERANCE`).

Where the conversion runs follows the trust boundary (docs/decisions.md): a model the
service may load (skops, sklearn/numpy/scipy types only) is converted in process; a
pickled one in the same one-off sandbox that computes its reference profile, which
answers the ONNX bytes and the estimator's own answers on the example. Those bytes are
checked as a plain ONNX graph (:func:`~matih_ml.runtime.onnx_session.check_graph`)
before the service opens them. A twin that cannot be made or disagrees never fails the
registration: the version keeps its pyfunc (or its sandbox), and the record says why.

The twin lives beside the version's registry copy, in ``matih_onnx_twin/``: the graph
(``model.onnx``, only when the check passed) and the check's record (``check.json``),
which the version's tags repeat for its read.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from matih_ml.runtime.loader import ModelHandle, ModelRuntime, SandboxedModel
from matih_ml.runtime.onnx_session import LABEL_OUTPUT, PROBABILITIES_OUTPUT, check_graph
from matih_ml.runtime.worker import sklearn_twin, to_json

log = logging.getLogger(__name__)

TWIN_DIR = "matih_onnx_twin"
TWIN_MODEL = "model.onnx"
TWIN_CHECK = "check.json"
PROBABILITY_TOLERANCE = 1e-5

ServingRuntime = Literal["onnxruntime", "pyfunc", "sandbox"]
_NUMERIC = {"double", "float", "long", "integer"}


@dataclass(frozen=True)
class TwinCheck:
    """What became of a version's twin.

    Attributes:
        status: ``passed`` (the twin serves), ``failed`` (made, but it disagreed or
            could not be made: the pyfunc serves) or ``skipped`` (not attempted).
        reason: Why, in a sentence.
        rows: Rows of the input example compared.
        max_probability_diff: The largest difference of a class probability.
        converter: ``skl2onnx x.y``.
    """

    status: Literal["passed", "failed", "skipped"]
    reason: str
    rows: int = 0
    max_probability_diff: float | None = None
    converter: str | None = None

    def as_json(self) -> str:
        """The record as compact JSON (the tag and ``check.json``)."""
        return json.dumps(asdict(self), separators=(",", ":"))


def serving_runtime(handle: ModelHandle, twin: TwinCheck | None) -> ServingRuntime:
    """Which runtime will serve a version: its ONNX graph or twin, its pyfunc in process,
    or its sandbox."""
    if handle.classification.loader == "mlflow.onnx" and handle.classification.in_process:
        return "onnxruntime"
    if twin is not None and twin.status == "passed":
        return "onnxruntime"
    return "pyfunc" if handle.classification.in_process else "sandbox"


def read_check(folder: Path) -> TwinCheck | None:
    """The twin's record in a version's files, None when it has none (or not one of ours)."""
    path = folder / TWIN_DIR / TWIN_CHECK
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
        return TwinCheck(**data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def make_twin(runtime: ModelRuntime, handle: ModelHandle, folder: Path) -> TwinCheck | None:
    """Make, check and write a version's twin into ``folder`` (the files to be copied
    into the registry). Never raises for the model's sake.

    Returns:
        The record (also written as ``check.json``), or None for a model that is not
        sklearn (nothing is written).
    """
    # What the tenant's files held at that path is not ours: only the service's stays.
    shutil.rmtree(folder / TWIN_DIR, ignore_errors=True)
    if "sklearn" not in handle.flavors or handle.classification.loader != "mlflow.sklearn":
        return None
    try:
        check = _make(runtime, handle, folder)
    except Exception as exc:
        log.info("no ONNX twin for %s", folder, exc_info=True)
        # One line: a converter's message can hold a whole graph node.
        check = TwinCheck("failed", " ".join(f"{type(exc).__name__}: {exc}".split())[:500])
    out = folder / TWIN_DIR
    out.mkdir(exist_ok=True)
    (out / TWIN_CHECK).write_text(check.as_json())
    return check


def _make(runtime: ModelRuntime, handle: ModelHandle, folder: Path) -> TwinCheck:
    from mlflow.models import Model

    if not runtime.onnx_twins:
        return TwinCheck("skipped", "ONNX twins are turned off (MATIH_ONNX_TWINS)")
    meta = Model.load(str(folder))
    inputs, columns, why_not = _graph_inputs(meta)
    if inputs is None:
        return TwinCheck("skipped", why_not)
    example: Any = meta.load_input_example(str(folder))
    if example is None:
        return TwinCheck("skipped", "no input example is stored to check a twin on")
    if isinstance(handle, SandboxedModel):
        answer = handle.onnx_twin(inputs)
    else:
        answer = sklearn_twin(handle.raw, inputs, example)
    if "skipped" in answer:
        return TwinCheck("skipped", str(answer["skipped"])[:500])
    converter = str(answer.get("converter", ""))[:100] or None
    graph = base64.b64decode(answer["onnx"], validate=True)
    check_graph(graph)
    scorer = runtime.onnx_scorer(graph, labels_only=True)
    if columns is not None:
        frame = example[columns] if hasattr(example, "columns") else example
        feeds = scorer.from_rows(frame.astype(object).to_numpy().tolist(), columns)
        if feeds is None:
            return TwinCheck("failed", "the twin's inputs are not the signature's columns")
    else:
        feeds = scorer.from_tensor(np.asarray(example))
    outputs = scorer.session.run(None, feeds.values)
    names = scorer.outputs
    labels = to_json(outputs[names.index(LABEL_OUTPUT)])
    rows = len(labels)
    if json.dumps(labels) != json.dumps(answer["labels"]):
        return TwinCheck(
            "failed",
            "its labels differ from the estimator's on the input example",
            rows,
            converter=converter,
        )
    diff = _probability_diff(answer.get("probabilities"), outputs, names)
    if diff is not None and not diff <= PROBABILITY_TOLERANCE:
        return TwinCheck(
            "failed",
            f"its probabilities differ from the estimator's by {diff:.3g} on the input "
            f"example, over {PROBABILITY_TOLERANCE:g}",
            rows,
            diff,
            converter,
        )
    (folder / TWIN_DIR).mkdir(exist_ok=True)
    (folder / TWIN_DIR / TWIN_MODEL).write_bytes(graph)
    compared = "labels equal" if diff is None else f"labels equal, probabilities within {diff:.3g}"
    return TwinCheck("passed", f"{compared} on the input example", rows, diff, converter)


def _probability_diff(expected: Any, outputs: list[Any], names: list[str]) -> float | None:
    """The largest difference between the estimator's probabilities and the twin's; None
    when the estimator has none (labels alone are compared then)."""
    if expected is None:
        return None
    if PROBABILITIES_OUTPUT not in names:
        return math.inf
    got = np.asarray(outputs[names.index(PROBABILITIES_OUTPUT)], dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    return float(np.max(np.abs(got - want))) if want.size else 0.0


def _graph_inputs(meta: Any) -> tuple[list[list[Any]] | None, list[str] | None, str]:
    """The twin's inputs from the signature, the columns in their order (None for a
    tensor signature), and why there are none: all-numeric columns as one float
    ``[N, F]`` input (sklearn's trees compare in float32 too), others one input per
    column."""
    schema = meta.get_input_schema()
    if schema is None:
        return None, None, "the model has no signature to give its twin inputs"
    if schema.is_tensor_spec():
        shape = schema.inputs[0].shape
        if len(schema.inputs) != 1 or len(shape) != 2 or shape[1] < 1:
            return None, None, f"its tensor signature's shape {shape} is not [rows, features]"
        return [["X", "float", int(shape[1])]], None, ""
    columns: list[str] = []
    kinds: list[str] = []
    for i, spec in enumerate(schema.inputs):
        columns.append(spec.name if spec.name is not None else str(i))
        kinds.append(getattr(spec.type, "name", str(spec.type)))
    if all(k in _NUMERIC for k in kinds):
        return [["X", "float", len(columns)]], columns, ""
    per_column = {"double": "float", "float": "float", "long": "int64", "integer": "int64"}
    inputs: list[list[Any]] = []
    for name, kind in zip(columns, kinds, strict=True):
        if kind not in per_column and kind != "string":
            return None, None, f"its column {name!r} is {kind}, which a twin does not take"
        inputs.append([name, per_column.get(kind, "string"), 1])
    return inputs, columns, ""
