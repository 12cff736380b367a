"""A registered version loaded for serving: its runtime, its input schema, its profile.

Requests are checked against the signature here, before the model sees them, so that a
bad field is a 422 that names it rather than whatever the framework raises. Then:

- an ONNX version, or an sklearn classifier with an ONNX twin that passed its check
  (:mod:`matih_ml.registry.onnx_twin`), is scored by its own onnxruntime session, fed
  straight from the checked values (:mod:`matih_ml.runtime.onnx_session`); a twin
  leaves to the estimator only records that lack an optional field;
- another sklearn model is called directly with a DataFrame in the signature's column
  order (or a float array): MLflow's pyfunc wrapper re-checks the schema per call, which
  costs more than the model does on one row;
- anything else goes through its pyfunc, in process or in the tenant's sandbox.

The model itself is loaded by :class:`~matih_ml.runtime.loader.ModelRuntime`: a data
format here, a code-bearing one in the tenant's sandbox. The signature and the
reference profile are read here either way: they are data.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import Model

from matih_ml.errors import ValidationError
from matih_ml.monitoring.stats import PROFILE_FILE
from matih_ml.registry.onnx_twin import TWIN_DIR, TWIN_MODEL, read_check
from matih_ml.runtime.files import inside
from matih_ml.runtime.formats import Classification
from matih_ml.runtime.loader import ModelHandle, ModelRuntime
from matih_ml.runtime.onnx_session import Feeds, OnnxScorer, check_graph
from matih_ml.runtime.worker import to_json

log = logging.getLogger(__name__)

_NUMERIC = {"double", "float", "long", "integer"}
_KINDS = {
    "double": (int, float),
    "float": (int, float),
    "long": (int,),
    "integer": (int,),
    "boolean": (bool,),
    "string": (str,),
}


@dataclass(frozen=True)
class Column:
    """One input column of a signature."""

    name: str
    type: str
    required: bool = True

    @property
    def exact(self) -> tuple[Any, ...] | None:
        """The JSON types this column takes, compared exactly (a bool is no int here);
        None: any value. Another type (a subclass) is judged by :func:`_fits`."""
        return _KINDS.get(self.type)


@dataclass
class LoadedModel:
    """One version, ready to predict."""

    tenant_id: str
    model: str
    version: str
    model_handle: ModelHandle
    columns: list[Column] = field(default_factory=list)
    tensor_input: bool = False
    profile: dict[str, Any] | None = None
    sla_ms: float | None = None
    _native: Any = None
    _fast: Any = None
    # The version's own ONNX graph, or its sklearn twin (labels only).
    _onnx: OnnxScorer | None = None
    # A tensor signature names its dtype, and MLflow's schema check wants exactly it (a
    # model logged from a float64 numpy array refuses float32).
    tensor_dtype: Any = np.float32
    tensor_shape: tuple[int, ...] | None = None
    _checks: list[tuple[Any, ...] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._checks = [c.exact for c in self.columns]

    @property
    def serving_runtime(self) -> str:
        """What scores it: ``onnxruntime``, ``pyfunc`` (in process) or ``sandbox``."""
        if self._onnx is not None:
            return "onnxruntime"
        return "pyfunc" if self.model_handle.classification.in_process else "sandbox"

    def in_process_for(self, data: Any) -> bool:
        """Whether scoring ``data`` (what :meth:`frame` or :meth:`tensor` built) stays in
        this process, rather than going over the sandbox's pipe."""
        if self._onnx is not None and (not self._onnx.labels_only or not _is_frame(data)):
            return True
        return self.model_handle.classification.in_process

    @classmethod
    def load(
        cls, tenant_id: str, model: str, version: str, local: Path, runtime: ModelRuntime
    ) -> LoadedModel:
        """Load a version from its downloaded files, checked first.

        Args:
            local: The files, at ``<serving root>/<tenant>/<model>/<version>``.
            runtime: Loads it in process or in the tenant's sandbox.

        Raises:
            UntrustedModelError: If its files fail the checks, or it carries code and
                code-bearing models are refused.
        """
        found = runtime.inspect(tenant_id, model, local)
        meta = Model.load(str(local))
        graph = _own_graph(found, meta, local)
        twin = _twin(found, meta, local) if graph is None else None
        # A version onnxruntime serves needs its pyfunc only for what the session cannot
        # take: none for an ONNX version; for a sandboxed model's twin, its worker is
        # started on first need. An in-process sklearn model is loaded now (a record
        # that lacks a field goes to it, on the event loop).
        deferred = graph is not None or (twin is not None and not found.in_process)
        handle = runtime.open_served(
            tenant_id, model, local, f"{model}/{version}", found=found, defer=deferred
        )
        columns: list[Column] = []
        tensor = False
        dtype = np.dtype(np.float32)
        shape = None
        schema = meta.get_input_schema()
        if schema is not None:
            if schema.is_tensor_spec():
                tensor = True
                dtype = np.dtype(schema.inputs[0].type)
                shape = tuple(schema.inputs[0].shape)
            else:
                for i, spec in enumerate(schema.inputs):
                    name = spec.name if spec.name is not None else str(i)
                    kind = getattr(spec.type, "name", str(spec.type))
                    columns.append(Column(name, kind, bool(spec.required)))
        profile_file = local / PROFILE_FILE
        profile = json.loads(profile_file.read_text()) if profile_file.exists() else None
        native = handle.raw if "sklearn" in meta.flavors and columns and not deferred else None
        loaded = cls(tenant_id, model, version, handle, columns, tensor, profile, None, native)
        loaded._fast = _array_estimator(native, columns, meta, local)
        loaded.tensor_dtype = dtype if dtype.kind in "fiu" else np.dtype(np.float32)
        loaded.tensor_shape = shape
        if graph is not None:
            loaded._onnx = _open_graph(runtime, graph)
        elif twin is not None:
            loaded._onnx = _open_twin(runtime, twin)
        return loaded

    # ---------------------------------------------------------------- input

    def frame(self, records: list[Any]) -> pd.DataFrame | np.ndarray | Feeds:
        """Check records against the signature and build the model's input: an ONNX
        session's feeds, or a float array, on the fast paths; else a DataFrame.

        Raises:
            ValidationError: Naming the first bad record and field.
        """
        if not isinstance(records, list) or not records:
            raise ValidationError(
                "records must be a non-empty list of objects.", details={"field": "records"}
            )
        if not self.columns:
            if not all(isinstance(r, dict) for r in records):
                raise ValidationError("records must be objects.", details={"field": "records"})
            return pd.DataFrame.from_records(records)
        columns = self.columns
        checks = self._checks
        rows: list[list[Any]] = []
        missing = False
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValidationError(
                    f"records[{i}] must be an object.", details={"field": f"records[{i}]"}
                )
            row: list[Any] = [record.get(c.name) for c in columns]
            for c, exact, value in zip(columns, checks, row, strict=True):
                kind = type(value)
                # The common case, judged here: a float must also be finite.
                if (
                    exact is not None
                    and kind in exact
                    and (kind is not float or math.isfinite(value))
                ):
                    continue
                if value is None:
                    missing = True
                    if c.required:
                        raise ValidationError(
                            f"records[{i}] lacks the field {c.name!r} ({c.type}).",
                            details={"field": f"records[{i}].{c.name}"},
                        )
                elif not _fits(value, c.type):
                    raise ValidationError(
                        f"records[{i}].{c.name} must be {c.type}, got {type(value).__name__}.",
                        details={"field": f"records[{i}].{c.name}"},
                    )
            rows.append(row)
        if self._onnx is not None and not missing:
            feeds = self._onnx.from_rows(rows, [c.name for c in columns])
            if feeds is not None:
                return feeds
        if self._fast is not None and not missing:
            return np.array(rows, dtype=np.float64)
        return pd.DataFrame(rows, columns=[c.name for c in columns])

    def tensor(self, inputs: Any) -> np.ndarray:
        """Tensor-signature input (PyTorch, ONNX, a numpy-logged sklearn model) as an array
        of the signature's dtype (float32 when it names none).

        Raises:
            ValidationError: If the array is ragged or not numeric.
        """
        try:
            array = np.asarray(inputs, dtype=self.tensor_dtype)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"inputs must be a numeric array: {exc}", details={"field": "inputs"}
            ) from None
        if array.ndim == 0 or not np.isfinite(array).all():
            raise ValidationError(
                "inputs must be a finite numeric array.", details={"field": "inputs"}
            )
        return array

    # --------------------------------------------------------------- predict

    def predict(self, data: pd.DataFrame | np.ndarray | Feeds) -> list[Any]:
        """Score checked input (what :meth:`frame` or :meth:`tensor` built); predictions
        as JSON-ready values, one per row."""
        onnx = self._onnx
        if onnx is not None:
            if isinstance(data, Feeds):
                return onnx.predict(data)
            if isinstance(data, np.ndarray) and not self.columns:
                self._check_shape(data)
                return onnx.predict(onnx.from_tensor(data))
            if not onnx.labels_only:  # the version's own graph takes any frame
                return onnx.predict(onnx.from_frame(data))
        if self._fast is not None and isinstance(data, np.ndarray) and data.dtype == np.float64:
            out = self._fast.predict(data)
        elif self._native is not None and isinstance(data, pd.DataFrame):
            out = self._native.predict(data)
        else:
            out = self.model_handle.predict(data)
        return to_json(out)

    def _check_shape(self, array: np.ndarray) -> None:
        """The tensor signature's shape, as MLflow's schema check enforced it before the
        session served these versions (-1 takes any size).

        Raises:
            ValueError: A rank or a fixed size differs (the caller's 422).
        """
        want = self.tensor_shape
        if want is None:
            return
        got = array.shape
        if len(got) != len(want) or any(w not in (-1, g) for w, g in zip(want, got, strict=True)):
            raise ValueError(
                f"Shape of input {got} does not match expected shape {want} of the signature."
            )


def _is_frame(data: Any) -> bool:
    return isinstance(data, pd.DataFrame)


def _own_graph(found: Classification, meta: Model, local: Path) -> Path | None:
    """An ONNX version's graph file, when it loads in process."""
    if not (found.in_process and found.loader == "mlflow.onnx"):
        return None
    data = (meta.flavors.get("onnx") or {}).get("data")
    return inside(local, data, "MLmodel.flavors.onnx.data") if data else None


def _twin(found: Classification, meta: Model, local: Path) -> Path | None:
    """An sklearn version's ONNX twin, when registration made it and its check passed."""
    if found.loader != "mlflow.sklearn" or "sklearn" not in meta.flavors:
        return None
    check = read_check(local)
    path = local / TWIN_DIR / TWIN_MODEL
    if check is None or check.status != "passed" or path.is_symlink() or not path.is_file():
        return None
    return path


def _open_graph(runtime: ModelRuntime, graph: Path) -> OnnxScorer:
    from matih_ml.runtime.loader import ModelLoadFailedError

    try:
        return runtime.onnx_scorer(graph)
    except Exception as exc:  # noqa: BLE001 - a tenant's graph that does not load
        raise ModelLoadFailedError(
            f"The model does not load: {type(exc).__name__}: {exc}"[:500]
        ) from None


def _open_twin(runtime: ModelRuntime, path: Path) -> OnnxScorer | None:
    """The twin's session; None (the estimator serves) if it does not open."""
    try:
        graph = path.read_bytes()
        check_graph(graph)  # again: the file came back from storage
        return runtime.onnx_scorer(graph, labels_only=True)
    except Exception:
        log.warning("the ONNX twin in %s does not open; its estimator serves", path, exc_info=True)
        return None


def _array_estimator(native: Any, columns: list[Column], meta: Model, local: Path) -> Any:
    """A copy of an sklearn estimator that takes a float array, or None where unsafe."""
    if native is None or not all(c.type in _NUMERIC for c in columns):
        return None
    names = [c.name for c in columns]
    # Only a plain attribute can be dropped from a shallow copy; a Pipeline derives its
    # names from its first step, which the copy would share.
    seen = native.__dict__.get("feature_names_in_")
    if seen is None or list(seen) != names:
        return None
    fast = copy.copy(native)
    del fast.feature_names_in_
    try:
        example = meta.load_input_example(str(local))
        if not isinstance(example, pd.DataFrame) or list(example.columns) != names:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same = np.array_equal(
                np.asarray(native.predict(example)),
                np.asarray(fast.predict(example.to_numpy(dtype=np.float64))),
            )
    except Exception:  # noqa: BLE001 - any doubt keeps the DataFrame path
        return None
    return fast if same else None


def _fits(value: Any, kind: str) -> bool:
    accepted = _KINDS.get(kind)
    if accepted is None:
        return True
    if kind in _NUMERIC:
        return (
            type(value) is not bool
            and isinstance(value, accepted)
            and (not isinstance(value, float) or math.isfinite(value))
        )
    return isinstance(value, accepted)
