"""Models uploaded as files by clients without MLflow.

An uploaded pickle or joblib file runs code when it is unpickled, so the service never
unpickles it: the tenant's upload sandbox does, once, and saves it as skops, which the service
then checks and registers like any other model's files. ONNX files and TorchScript are
data and are read here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from matih_ml.errors import ValidationError
from matih_ml.registry import frameworks
from matih_ml.registry.metadata import Framework
from matih_ml.runtime.loader import ModelRuntime


@contextmanager
def uploaded_model(
    tenant: str, framework: str, data: bytes, runtime: ModelRuntime
) -> Iterator[Any]:
    """The model in an uploaded file, ready for ``register_model_version``.

    Yields an ``onnx.ModelProto``, a TorchScript module, or, for sklearn, the
    :class:`~matih_ml.runtime.loader.SavedModelFolder` the sandbox wrote.

    Raises:
        ValidationError: If the framework is unknown or the file is not such a model.
        UntrustedModelError: If a pickle holds types outside sklearn, numpy and scipy,
            or the sandbox is off.
    """
    fw = frameworks.parse_framework(framework)
    if fw is Framework.SKLEARN:
        with runtime.unpickle_upload(tenant, data, frameworks.requirements(fw)) as saved:
            yield saved
        return
    try:
        if fw is Framework.ONNX:
            import onnx

            model = onnx.load_model_from_string(data)
            onnx.checker.check_model(model)
        elif fw is Framework.PYTORCH:
            import torch

            # TorchScript is a graph and weights: loading it runs none of the tenant's
            # Python (a pickled nn.Module would, and is refused by torch.jit.load).
            model = torch.jit.load(io.BytesIO(data), map_location="cpu")
        else:
            model = None
    except Exception as exc:  # noqa: BLE001 - any failure to read is the file's
        raise ValidationError(
            f"The file is not a loadable {fw.value} model: {type(exc).__name__}.",
            details={"field": "file"},
        ) from None
    if model is None:
        raise ValidationError(
            f"Uploads of {fw.value} models are not supported; log them with MLflow and "
            "send a run_id.",
            details={"field": "framework"},
        )
    yield model
