"""A registered version loaded for serving: its pyfunc, its input schema, its profile.

Requests are checked against the signature here, before the model sees them, so that a
bad field is a 422 that names it rather than whatever the framework raises. An sklearn
model is called directly with a DataFrame in the signature's column order: MLflow's
pyfunc wrapper re-checks the schema per call, which costs more than the model does on
one row.

The model itself is loaded by :class:`~matih_ml.runtime.loader.ModelRuntime`: a data
format here, a code-bearing one in the tenant's sandbox. The signature and the
reference profile are read here either way: they are data.
"""

from __future__ import annotations

import copy
import json
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
from matih_ml.runtime.loader import ModelHandle, ModelRuntime
from matih_ml.runtime.worker import to_json

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
    # A tensor signature names its dtype, and MLflow's schema check wants exactly it (a
    # model logged from a float64 numpy array refuses float32).
    tensor_dtype: Any = np.float32

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
        handle = runtime.open_served(tenant_id, model, local, f"{model}/{version}")
        meta = Model.load(str(local))
        columns: list[Column] = []
        tensor = False
        dtype = np.dtype(np.float32)
        schema = meta.get_input_schema()
        if schema is not None:
            if schema.is_tensor_spec():
                tensor = True
                dtype = np.dtype(schema.inputs[0].type)
            else:
                for i, spec in enumerate(schema.inputs):
                    name = spec.name if spec.name is not None else str(i)
                    kind = getattr(spec.type, "name", str(spec.type))
                    columns.append(Column(name, kind, bool(spec.required)))
        profile_file = local / PROFILE_FILE
        profile = json.loads(profile_file.read_text()) if profile_file.exists() else None
        native = handle.raw if "sklearn" in meta.flavors and columns else None
        loaded = cls(tenant_id, model, version, handle, columns, tensor, profile, None, native)
        loaded._fast = _array_estimator(native, columns, meta, local)
        loaded.tensor_dtype = dtype if dtype.kind in "fiu" else np.dtype(np.float32)
        return loaded

    # ---------------------------------------------------------------- input

    def frame(self, records: list[Any]) -> pd.DataFrame | np.ndarray:
        """Check records against the signature and build the model's input: a float
        array on the fast path, else a DataFrame.

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
        rows: list[list[Any]] = []
        missing = False
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValidationError(
                    f"records[{i}] must be an object.", details={"field": f"records[{i}]"}
                )
            row = [record.get(c.name) for c in columns]
            for c, value in zip(columns, row, strict=True):
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

    def predict(self, data: pd.DataFrame | np.ndarray) -> list[Any]:
        """Score checked input (what :meth:`frame` or :meth:`tensor` built); predictions
        as JSON-ready values, one per row."""
        if self._fast is not None and isinstance(data, np.ndarray) and data.dtype == np.float64:
            out = self._fast.predict(data)
        elif self._native is not None and isinstance(data, pd.DataFrame):
            out = self._native.predict(data)
        else:
            out = self.model_handle.predict(data)
        return to_json(out)


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
