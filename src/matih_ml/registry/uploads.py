"""Models uploaded as files by clients without MLflow.

Unpickling runs code from the file: only callers allowed to register (editors and
admins of the tenant) reach this, and the docs say so.
"""

from __future__ import annotations

from typing import IO, Any

from matih_ml.errors import ValidationError
from matih_ml.registry.frameworks import parse_framework
from matih_ml.registry.metadata import Framework


def load_uploaded_model(framework: str, file: IO[bytes]) -> Any:
    """Load an uploaded model file: an sklearn pickle/joblib, an ONNX file or TorchScript.

    Raises:
        ValidationError: If the framework is unknown or the file is not such a model.
    """
    fw = parse_framework(framework)
    try:
        if fw is Framework.SKLEARN:
            import joblib

            return joblib.load(file)
        if fw is Framework.ONNX:
            import onnx

            model = onnx.load_model_from_string(file.read())
            onnx.checker.check_model(model)
            return model
        if fw is Framework.PYTORCH:
            import torch

            return torch.jit.load(file, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure to read is the file's
        raise ValidationError(
            f"The file is not a loadable {fw.value} model: {type(exc).__name__}.",
            details={"field": "file"},
        ) from None
    raise ValidationError(
        f"Uploads of {fw.value} models are not supported; log them with MLflow and send a run_id.",
        details={"field": "framework"},
    )
